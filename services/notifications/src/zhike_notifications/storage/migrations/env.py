from zhike_runtime.migrations import run_in_alembic_env

run_in_alembic_env()
