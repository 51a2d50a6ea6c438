# Deploy-runbook targets over migrator's management commands.
#
#   make migrate-plan                 what would run, with risks; changes nothing
#   make migrate YES=1                apply (YES=1 confirms a guarded environment)
#   make migrate-check                deploy gate: integrity, nothing pending
#   make migrate-down YES=1           undo what the last safemigrate run applied
#   make migrate-test SINCE=origin/main
#   make migrate STAGE=before-deploy  zero-downtime deploys: the stage the old code survives,
#   make migrate-check STAGE=before-deploy   the gate before switching traffic,
#   make migrate STAGE=after-deploy   and the rest once no old code runs (docs/zero-downtime.md)
#
# Variables (all overridable: make migrate PYTHON=.venv/bin/python DATABASE=replica):
#   PYTHON    interpreter                          (python)
#   MANAGE    how to run management commands       ($(PYTHON) manage.py)
#   DATABASE  database alias                       (default)
#   YES       1 confirms changes without a prompt  (empty)
#   SINCE     git revision for migrate-test        (empty: every migration)
#   APPS      app labels for migrate-test          (empty: all apps)
#   STAGE     before-deploy or after-deploy        (empty: every pending migration)
#   ARGS      extra flags for the command          (empty)
# The environment comes from MIGRATOR_ENV (or the MIGRATOR setting), as for the commands.

PYTHON ?= python
MANAGE ?= $(PYTHON) manage.py
DATABASE ?= default
YES ?=
SINCE ?=
APPS ?=
STAGE ?=
ARGS ?=

YES_FLAG = $(if $(filter 1 yes true,$(YES)),--yes)
SINCE_FLAG = $(if $(SINCE),--since $(SINCE))
STAGE_FLAG = $(if $(STAGE),--stage $(STAGE))

.PHONY: help migrate migrate-plan migrate-down migrate-check migrate-test migrate-logs backup

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | sed 's/:.*## /\t/'

migrate:  ## Apply migrations: safemigrate, never prompting (YES=1 confirms)
	$(MANAGE) safemigrate --database $(DATABASE) --noinput $(YES_FLAG) $(STAGE_FLAG) $(ARGS)

migrate-plan:  ## Show the plan and its risks; change nothing
	$(MANAGE) safemigrate --plan --database $(DATABASE) $(STAGE_FLAG) $(ARGS)

migrate-down:  ## Roll back what the last safemigrate run applied (YES=1 confirms)
	$(MANAGE) rollback --last --database $(DATABASE) --noinput $(YES_FLAG) $(ARGS)

migrate-check:  ## Fail unless files match history and nothing is pending
	$(MANAGE) verifymigrations --database $(DATABASE) $(ARGS)
	$(MANAGE) migrationstatus --check --database $(DATABASE) $(STAGE_FLAG) $(ARGS)

migrate-test:  ## Round-trip migrations on a throwaway test database
	$(MANAGE) testmigrations $(APPS) --database $(DATABASE) --noinput $(SINCE_FLAG) $(ARGS)

migrate-logs:  ## Show the audit log of runs
	$(MANAGE) migrationhistory --database $(DATABASE) $(ARGS)

backup:  ## Back up the database
	$(MANAGE) backup --database $(DATABASE) $(ARGS)
