"""The task object is the one place a task's difference is decided (cnnlab/tasks): no module outside cnnlab/tasks
compares a task's name, and a run and a user's model answer one interface.

The scan reads every module's syntax tree: a comparison, an `in` test or a `match` case is refused when it
involves a task's name written out ("segmentation", alone or in a tuple, list or set), or a task object or class
by its name (`task is SEGMENTATION`, `isinstance(task, Segmentation)`). Matching one task value against another
(the model's task against the dataset's) is generic and allowed: it names no task.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cnnlab.tasks import TASKS

PACKAGE = Path(__file__).resolve().parent.parent / "cnnlab"
TASK_MODULES = PACKAGE / "tasks"
NAMES = set(TASKS)
OBJECTS = {type(task).__name__ for task in TASKS.values()} | {name.upper() for name in NAMES}


def _named(node: ast.AST) -> bool:
    """Whether `node` writes out a task: its name as a string, or a task class or object by name."""
    if isinstance(node, ast.Constant):
        return node.value in NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_named(element) for element in node.elts)
    if isinstance(node, ast.Name):
        return node.id in OBJECTS
    if isinstance(node, ast.Attribute):
        return node.attr in OBJECTS
    return False


def task_name_tests(source: str) -> list[tuple[int, str]]:
    """(line, code) of every place in `source` that tests for a particular task."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.MatchValue):
            operands = [node.value]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("isinstance",
                                                                                                 "issubclass"):
            operands = node.args[1:]
        else:
            continue
        if any(_named(operand) for operand in operands):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_no_module_outside_the_tasks_compares_a_task_name():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {code}"
             for path in sorted(PACKAGE.rglob("*.py")) if TASK_MODULES not in path.parents
             for line, code in task_name_tests(path.read_text())]
    assert found == [], "ask the task (cnnlab/tasks) instead:\n" + "\n".join(found)


@pytest.mark.parametrize("code", [
    'if info.task == "segmentation": pass',
    'segments = "segmentation" != task.name',
    'x = result.task in ("classification", "segmentation")',
    'ok = task is SEGMENTATION',
    'ok = isinstance(task, Segmentation)',
    'match task.name:\n    case "classification": pass',
])
def test_the_scan_sees_a_task_name_test(code):
    assert len(task_name_tests(code)) == 1


@pytest.mark.parametrize("code", [
    'if dataset.task != task.name: pass',  # the model's task against the dataset's: no task named
    'register_model("unet", task="segmentation")',  # a declaration, not a test
    'recipe = args.recipe or "segmentation"',  # a recipe's name, not a comparison
])
def test_the_scan_lets_generic_code_be(code):
    assert task_name_tests(code) == []


def test_a_run_and_a_users_model_answer_one_interface(tmp_path):
    """`Inspected` is what show, report and serve take: a run folder and a --model file both answer it."""
    from cnnlab.train.inspected import Inspected
    from cnnlab.train.runs import Run
    from cnnlab.train.user_model import UserModel

    members = {name for name in vars(Inspected) if not name.startswith("_")} - {"mro"}
    for cls in (Run, UserModel):
        missing = sorted(name for name in members if not hasattr(cls, name) and
                         name not in getattr(cls, "__dataclass_fields__", {}))
        assert missing == [], f"{cls.__name__} lacks {missing}"
