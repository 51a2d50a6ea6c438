"""The widget table (id, name) of the stages_marked set."""

from importlib import import_module

Migration = import_module("tests.scenarios.migration_sets.stages_marked.0001_initial").Migration
