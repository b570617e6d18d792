"""The local stand-in for the Azure Functions host: what `broker worker` and `make run` run.

In Azure the host fires the timers (NCRONTAB, `use_monitor`) and drains the `rotations` queue with
its retry and poison rule; `function_app.py` is a few triggers over `broker.jobs`. Locally this
package plays the host: `worker` fires the same jobs on the same schedules, and `queues` holds an
in-process queue with Azure's semantics and the host's retry rule (`QueueProcessor`).

It lives inside `broker/` rather than beside it because it ships with the `broker` command
(`broker worker` runs it) and is installed with it, but it is an adapter like `function_app.py`
and `broker.cli`: the core never imports it (an import contract in pyproject.toml says so), so
nothing the host does not do can leak into what runs in Azure.
"""
