"""Task families with verifiable answers, and the generator of the embedded world's prompt mix."""

from gps_env.tasks.addition import AdditionTask
from gps_env.tasks.base import FunctionTask, Problem, Task, exact_match
from gps_env.tasks.countdown import CountdownTask, evaluate
from gps_env.tasks.jsonl import load_jsonl
from gps_env.tasks.mix import TaskMix, default_mix

__all__ = [
    "AdditionTask",
    "CountdownTask",
    "FunctionTask",
    "Problem",
    "Task",
    "TaskMix",
    "default_mix",
    "evaluate",
    "exact_match",
    "load_jsonl",
]
