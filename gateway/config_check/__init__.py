"""`duisgw config check`: what start-up would load, checked without serving.

Above the composition root (it runs the root's `load_for_start`), below the CLI.

    check     the checks and the report's values (nothing is bound or written)
    render    the report as text for a person, as JSON for a pipeline
    command   its arguments and exit status
"""

__all__ = ["check", "command", "render"]
