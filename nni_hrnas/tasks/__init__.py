"""Tasks: Lightning modules usable as NNI evaluators, their metrics, and the task registry."""

from .registry import TASKS, TaskSpec, get_task, task_names

__all__ = ['TASKS', 'TaskSpec', 'get_task', 'task_names']
