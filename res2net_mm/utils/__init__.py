from .complexity import (Complexity, count_complexity, count_macs,
                         count_params)

__all__ = ['Complexity', 'count_complexity', 'count_macs', 'count_params']
