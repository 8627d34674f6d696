"""Fixtures shared by the end-to-end tests."""

import os

import pytest

from attention.data import tasks
from tests import e2e


def shared_temp(tmp_path_factory):
  """A directory of this test session that every pytest-xdist worker sees."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


@pytest.fixture(scope='session')
def once(tmp_path_factory):
  """once(name, build) -> (directory, what build returned): build(directory) runs once
  in the whole session, whichever worker asks first (the others wait and reuse it)."""
  return lambda name, build: e2e.once(shared_temp(tmp_path_factory) / 'once' / name, build)


@pytest.fixture(scope='session')
def data_dir(once):
  """The `copy` task prepared once for the session."""
  def build(directory):
    tasks.load('copy', str(directory))
  return str(once('data', build)[0])


def pytest_collection_modifyitems(items):
  """End-to-end (`slow`) tests first: each takes up to two minutes, and one that starts
  last leaves the other xdist worker idle while it runs."""
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)
