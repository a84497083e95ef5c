"""Errors raised by the checkpoint converters."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and why.

    Args:
        path (str): The file.
        problem (str): What is wrong with it.
        hint (str): What the user can do. Defaults to ''.
    """

    def __init__(self, path, problem: str, hint: str = ''):
        self.path = str(path)
        self.problem = problem
        self.hint = hint
        message = f'{self.path}: {problem}'
        if hint:
            message += f'. {hint}'
        super().__init__(message)


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled objects that would run code when loaded."""


class WeightMismatchError(ValueError, RuntimeError):
    """Checkpoint weights do not fit the model (missing or mis-shaped keys).

    Also a ``RuntimeError``, the error of torch's strict ``load_state_dict``
    for the same problem, so code written for that catches it too.
    """


class TensorShapeError(CheckpointError, WeightMismatchError):
    """Tensors do not fit the architecture; the message lists each key with
    the file's and the expected shape."""


class NonFiniteWeightsError(CheckpointError):
    """The weights hold NaN or infinite values; the message names them."""
