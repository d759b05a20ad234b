"""Task families with verifiable answers, dataset-file loaders, and the generator of the embedded world's prompt mix."""

from gps_env.tasks.addition import AdditionTask
from gps_env.tasks.base import FunctionTask, Problem, Task, exact_match
from gps_env.tasks.countdown import CountdownTask, evaluate
from gps_env.tasks.datasets import FORMATS, load_dataset_file, read_records
from gps_env.tasks.jsonl import load_jsonl
from gps_env.tasks.math import MathTask, MathVerifier, last_boxed
from gps_env.tasks.mix import TaskMix, default_mix

__all__ = [
    "FORMATS",
    "AdditionTask",
    "CountdownTask",
    "FunctionTask",
    "MathTask",
    "MathVerifier",
    "Problem",
    "Task",
    "TaskMix",
    "default_mix",
    "evaluate",
    "exact_match",
    "last_boxed",
    "load_dataset_file",
    "load_jsonl",
    "read_records",
]
