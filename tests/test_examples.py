"""The scheduling example is a dags-folder file for `crmsync.scheduling.airflow_dag`.

Airflow itself parses and runs it in CI's own step (`make test-airflow`, which copies it into
its dags folder); here, without Airflow, it is checked to be the factory's DAG file.
"""

from __future__ import annotations

import ast
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "examples" / "schedule_with_airflow.py"


def test_the_example_builds_its_dag_with_the_packages_factory() -> None:
    tree = ast.parse(EXAMPLE.read_text())

    imports = [
        (node.module, [alias.name for alias in node.names])
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module != "__future__"
    ]
    assert ("crmsync.scheduling.airflow_dag", ["build_dag"]) in imports
    assert not any(module and module.startswith("airflow") for module, _ in imports)
    dag = next(
        node
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "dag"
    )
    assert isinstance(dag.value, ast.Call) and getattr(dag.value.func, "id", "") == "build_dag"
