"""Where sweep points run: their own GPUs on one host (the assignment on a fake device
list, since CI has none); a real Ray cluster, a head started with `ray start`; and SLURM
jobs through submitit's local executor (no SLURM here), preemption included. Failures,
re-runs and Ctrl-C through each, held against what the local launcher does."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from attention import UserError
from attention.training import workdir_lock
from tests import e2e
from tests.test_sweep import (HEADS_SWEEP, TINY, check_failed_point_sweep, heads_sweep,  # noqa: F401
                              read_rows)

sys.path.insert(0, os.path.join(e2e.ROOT, 'scripts'))
from sweeping import local, slurm  # noqa: E402

FAKE_GPUS = {'CUDA_VISIBLE_DEVICES': '3,5,7,9'}
# The test cluster listens on this machine only: no token to share between its head and
# the sweeps that join it.
NO_AUTH = {'RAY_AUTH_MODE': 'disabled'}


def test_gpu_sets_never_share_a_gpu():
  gpus = ['3', '5', '7', '9']
  assert local.gpu_sets(gpus, 2, 2) == [['3', '5'], ['7', '9']]
  assert local.gpu_sets(gpus, 2, 0) == [['3', '5'], ['7', '9']]    # as many as fit
  assert local.gpu_sets(gpus[:3], 2, 0) == [['3', '5']]            # the odd one stays idle
  assert local.gpu_sets(gpus, 1, 3) == [['3'], ['5'], ['7']]
  assert local.gpu_sets(gpus, 0, 2) == [[], []]
  with pytest.raises(UserError, match=r'--parallel=3 with --gpus_per_point=2 needs 6 GPUs'):
    local.gpu_sets(gpus, 2, 3)
  with pytest.raises(UserError, match=r'--gpus_per_point=1: this machine has 0 GPU'):
    local.gpu_sets([], 1, 1)
  with pytest.raises(UserError, match=r'--gpus_per_point=5: this machine has 4 GPU'):
    local.gpu_sets(gpus, 5, 0)


def test_visible_gpus_and_the_environment_of_a_point(monkeypatch):
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', ' 3, 5 ,7')
  assert local.visible_gpus() == ['3', '5', '7']
  assert local.concurrency(0, 0, 1, points=10) == min(3, len(local.available_cpus()))
  assert local.concurrency(0, 0, 2, points=10) == 1
  assert local.concurrency(0, 0, 1, points=1) == 1
  env = local.point_env([0], ['5', '7'], parallel=2)
  assert env['CUDA_VISIBLE_DEVICES'] == '5,7' and env['OMP_NUM_THREADS'] == '1'
  assert 'XLA_PYTHON_CLIENT_PREALLOCATE' not in env   # a GPU of its own: JAX's default
  env = local.point_env([0, 1], None, parallel=2)
  assert env['XLA_PYTHON_CLIENT_PREALLOCATE'] == 'false' and env['OMP_NUM_THREADS'] == '2'
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
  assert local.visible_gpus() == []
  cpus = local.available_cpus()
  assert local.cpu_sets(len(cpus), 1) == [[c] for c in cpus]


@pytest.mark.slow
def test_each_running_point_gets_its_own_gpus(data_dir, tmp_path):
  """Two points at once on a machine whose CUDA_VISIBLE_DEVICES names four GPUs (JAX runs
  on CPU here, so the names are all the runs see of them): two each, never the same."""
  workdir = tmp_path / 'gpus'
  out = e2e.run('scripts/sweep.py', *TINY, f'--config.data.data_dir={data_dir}',
                f'--workdir={workdir}', '--sweep=train.learning_rate=[1e-3, 3e-3]',
                '--gpus_per_point=2', env=FAKE_GPUS)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
  infos = [json.loads((workdir / n / 'sweep.json').read_text())
           for n in ('train.learning_rate=0.001', 'train.learning_rate=0.003')]
  assert sorted(tuple(i['gpus']) for i in infos) == [('3', '5'), ('7', '9')], infos
  assert all(i['status'] == 'done' and i['launcher'] == 'local' for i in infos)
  if len(local.available_cpus()) > 1:   # and CPUs of their own, as without GPUs
    assert not set(infos[0]['cpus']) & set(infos[1]['cpus']), infos


def test_more_gpus_than_there_are_is_one_line_and_makes_nothing(tmp_path):
  workdir = tmp_path / 'gpus'
  out = e2e.run('scripts/sweep.py', TINY[0], f'--workdir={workdir}',
                '--sweep=train.learning_rate=[1e-3, 3e-3]', '--gpus_per_point=3',
                '--parallel=2', env=FAKE_GPUS)
  assert out.returncode == 2, (out.stdout, out.stderr)
  assert out.stderr.strip() == ('error: --parallel=2 with --gpus_per_point=3 needs 6 GPUs; '
                                'there are 4 (3,5,7,9)')
  assert not workdir.exists()


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture
def ray_head():
  """A one-node Ray cluster on 127.0.0.1 made by `ray start --head`, as on a cluster's head
  node, stopped (with every process it started) at the end. Its addresses: the head's
  (HOST:PORT) and its Ray Client server's (ray://HOST:PORT)."""
  temp = tempfile.mkdtemp(prefix='ray-', dir='/tmp')   # Ray's socket paths stop at 107 bytes
  port, client_port = free_port(), free_port()
  ray = os.path.join(os.path.dirname(sys.executable), 'ray')
  with open(os.path.join(temp, 'head.log'), 'w') as log:
    head = subprocess.Popen(
        [ray, 'start', '--head', '--block', '--node-ip-address=127.0.0.1', f'--port={port}',
         '--num-cpus=2', f'--temp-dir={temp}', '--include-dashboard=false',
         '--disable-usage-stats', f'--ray-client-server-port={client_port}',
         f'--object-store-memory={100 * 2**20}'],
        stdout=log, stderr=subprocess.STDOUT, env={**e2e.environment(), **NO_AUTH},
        start_new_session=True)
  try:
    deadline = time.time() + 120
    for listening in (port, client_port):
      while True:
        assert head.poll() is None, open(os.path.join(temp, 'head.log')).read()[-3000:]
        try:
          socket.create_connection(('127.0.0.1', listening), timeout=1).close()
          break
        except OSError:
          assert time.time() < deadline, 'the Ray head did not listen within 120 s'
          time.sleep(0.5)
    yield f'127.0.0.1:{port}', f'ray://127.0.0.1:{client_port}'
  finally:
    try:   # Ctrl-C, as a user stops `ray start --block`: Ray takes a minute over SIGTERM
      os.killpg(head.pid, signal.SIGINT)
      head.wait(timeout=60)
    except subprocess.TimeoutExpired:
      os.killpg(head.pid, signal.SIGKILL)
      head.wait()
    except ProcessLookupError:   # it failed to start: the assertion above says why
      pass
    try:   # whatever of its session outlived the head (none, when Ray stops cleanly)
      os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
    shutil.rmtree(temp, ignore_errors=True)


def check_as_local(workdir, local_dir, out, launcher: str) -> None:
  """A sweep through a cluster launcher ended as the local launcher's did: the failed
  point recorded with its error, the same columns and numbers, the same points."""
  check_failed_point_sweep(workdir, dict(returncode=out.returncode, stdout=out.stdout,
                                         stderr=out.stderr))
  ours, theirs = read_rows(workdir), read_rows(local_dir)
  assert [list(r) for r in ours] == [list(r) for r in theirs]   # the same columns
  for mine, other in zip(ours, theirs):
    for key in ('model.num_heads', 'status', 'error', 'params', 'val_exact_match',
                'test_exact_match', 'test_bleu'):
      assert mine[key] == other[key], (key, mine, other)   # same runs, same numbers
  points = sorted(n for n in os.listdir(workdir) if n != slurm.JOBS_DIR)
  assert points == sorted(os.listdir(local_dir))
  info = json.loads((workdir / 'model.num_heads=4' / 'sweep.json').read_text())
  assert info['launcher'] == launcher and info['host'] == socket.gethostname()
  assert info['cpu_s'] > 0 and info['gpus'] == []


def check_rerun(workdir, again, submitted: str) -> None:
  """A re-run skips the finished point, tries the failed one again, changes nothing of
  the done one's directory (checked by the caller) and ends as the first run did."""
  assert again.returncode == 1, again.stdout[-2000:] + again.stderr[-2000:]
  assert 'model.num_heads=4: done already, skipped' in again.stdout
  assert f'[1/1] model.num_heads=3: {submitted}' in again.stdout, again.stdout
  check_failed_point_sweep(workdir, dict(returncode=again.returncode, stdout=again.stdout,
                                         stderr=again.stderr))


@pytest.mark.slow
def test_a_ray_cluster_runs_a_sweep_as_local_does(ray_head, heads_sweep, data_dir, tmp_path):
  """Both points at once through the cluster's head: the failing one is recorded with its
  error and the other finishes; the tables hold what the local launcher's hold. A re-run
  through Ray Client skips the finished point, tries the failed one again, and starts no
  run that is done."""
  local_dir, _ = heads_sweep
  head, client = ray_head
  workdir = tmp_path / 'heads'
  args = (*TINY, f'--config.data.data_dir={data_dir}', f'--workdir={workdir}', *HEADS_SWEEP,
          '--launcher=ray')
  out = e2e.run('scripts/sweep.py', *args, f'--ray_address={head}', timeout=900, env=NO_AUTH)
  check_as_local(workdir, local_dir, out, 'ray')
  done = e2e.snapshot(workdir / 'model.num_heads=4')
  again = e2e.run('scripts/sweep.py', *args, f'--ray_address={client}', timeout=900,
                  env=NO_AUTH)
  check_rerun(workdir, again, 'submitted')
  assert e2e.snapshot(workdir / 'model.num_heads=4') == done


@pytest.mark.slow
def test_a_slurm_job_array_runs_a_sweep_as_local_does(heads_sweep, data_dir, tmp_path):
  """The same sweep as SLURM jobs, through submitit's local executor (the jobs as
  processes here, with what SLURM gives a job: its files, result pickles, signals)."""
  local_dir, _ = heads_sweep
  workdir = tmp_path / 'heads'
  args = (*TINY, f'--config.data.data_dir={data_dir}', f'--workdir={workdir}', *HEADS_SWEEP,
          '--launcher=slurm', '--slurm_cluster=local')
  out = e2e.run('scripts/sweep.py', *args, timeout=900)
  check_as_local(workdir, local_dir, out, 'slurm')
  info = json.loads((workdir / 'model.num_heads=4' / 'sweep.json').read_text())
  assert info['attempts'] == 1 and info['job'], info
  done = e2e.snapshot(workdir / 'model.num_heads=4')
  again = e2e.run('scripts/sweep.py', *args, timeout=900)
  check_rerun(workdir, again, 'submitted as job')
  assert e2e.snapshot(workdir / 'model.num_heads=4') == done


@pytest.mark.slow
def test_a_preempted_slurm_job_checkpoints_requeues_and_resumes(data_dir, tmp_path):
  """SIGUSR2 to a running job, as SLURM warns a job before its time limit or a preemption:
  the job stops its run with a checkpoint and requeues itself; the job that follows
  resumes the run from that checkpoint and finishes it."""
  workdir = tmp_path / 'preempted'
  name = 'train.learning_rate=0.001'
  run_dir = workdir / name
  sweep = subprocess.Popen(
      [sys.executable, os.path.join(e2e.ROOT, 'scripts/sweep.py'), *TINY,
       f'--config.data.data_dir={data_dir}', f'--workdir={workdir}',
       '--sweep=train.learning_rate=[1e-3]', '--config.train.num_steps=600',
       '--config.train.log_every_steps=20', '--config.eval.every_steps=600',
       '--config.checkpoint.every_steps=600', '--launcher=slurm', '--slurm_cluster=local'],
      cwd=e2e.ROOT, env=e2e.environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, start_new_session=True)
  try:
    deadline = time.time() + 300
    while not ((run_dir / 'metrics.jsonl').exists() and
               (run_dir / 'metrics.jsonl').stat().st_size):
      assert sweep.poll() is None, sweep.communicate()
      assert time.time() < deadline, 'the run did not start training within 300 s'
      time.sleep(0.2)
    run_pid = json.loads((run_dir / 'lock').read_text())['pid']
    with open(f'/proc/{run_pid}/stat') as f:   # the job: the run's parent
      job_pid = int(f.read().rsplit(')', 1)[1].split()[1])
    os.kill(job_pid, signal.SIGUSR2)
    stdout, stderr = sweep.communicate(timeout=300)
  finally:
    if sweep.poll() is None:
      os.killpg(sweep.pid, signal.SIGKILL)
  assert sweep.returncode == 0, (stdout[-2000:], stderr[-2000:])
  info = json.loads((run_dir / 'sweep.json').read_text())
  assert info['status'] == 'done' and info['attempts'] == 2, info
  log = (run_dir / 'sweep.log').read_text()
  stopped = re.search(r'SIGTERM: stopped after step (\d+) with a checkpoint', log)
  assert stopped and 0 < int(stopped.group(1)) < 600, log[-3000:]
  assert f'resumed from step {stopped.group(1)}' in log, log[-3000:]
  steps = [json.loads(line)['step'] for line in (run_dir / 'metrics.jsonl').read_text().splitlines()
           if json.loads(line)['split'] == 'train']
  assert steps == sorted(set(steps)) and steps[-1] == 600   # one run, resumed, to its end
  assert json.loads((run_dir / 'eval' / 'test.json').read_text())['step'] == 600


def start_long_sweep(workdir, data_dir, ray_temp, *launcher):
  """A sweep of two points at once whose runs would train for hours, in a process group of
  its own as a terminal's foreground command is (a Ray cluster it starts keeps its files
  in `ray_temp`), and started with SIGINT ignored, as a script's background job is: the
  sweep and its runs must still take Ctrl-C."""
  args = [*TINY, f'--config.data.data_dir={data_dir}', f'--workdir={workdir}',
          '--sweep=train.learning_rate=[1e-3, 3e-3]', '--config.train.num_steps=1000000',
          '--config.eval.every_steps=1000000', '--config.checkpoint.every_steps=1000000',
          '--parallel=2', *launcher]
  return subprocess.Popen([sys.executable, os.path.join(e2e.ROOT, 'scripts/sweep.py'), *args],
                          cwd=e2e.ROOT, env={**e2e.environment(), 'RAY_TMPDIR': ray_temp},
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))


@pytest.mark.slow
@pytest.mark.parametrize('launcher', ['local', 'ray', 'slurm'])
def test_ctrl_c_stops_the_running_points_with_a_checkpoint(launcher, data_dir, tmp_path):
  """Ctrl-C (SIGINT to the sweep's process group) once both runs train: the sweep exits 130
  after its runs have checkpointed and let go of their directories; no run is left, and
  no point is recorded as done or failed, so a re-run resumes them. With ray, through the
  cluster the sweep starts on this machine when no --ray_address is given; with slurm,
  through submitit's local executor."""
  workdir = tmp_path / 'long'
  names = ['train.learning_rate=0.001', 'train.learning_rate=0.003']
  ray_temp = tempfile.mkdtemp(prefix='ray-', dir='/tmp')   # socket paths stop at 107 bytes
  sweep = start_long_sweep(workdir, data_dir, ray_temp, f'--launcher={launcher}',
                           *(['--slurm_cluster=local'] if launcher == 'slurm' else []))
  try:
    deadline = time.time() + 300
    while not all((workdir / n / 'metrics.jsonl').exists() and
                  (workdir / n / 'metrics.jsonl').stat().st_size for n in names):
      assert sweep.poll() is None, sweep.communicate()
      assert time.time() < deadline, 'the runs did not start training within 300 s'
      time.sleep(0.5)
    holders = [json.loads((workdir / n / 'lock').read_text())['pid'] for n in names]
    os.killpg(sweep.pid, signal.SIGINT)
    stdout, stderr = sweep.communicate(timeout=180)
  finally:
    if sweep.poll() is None:
      os.killpg(sweep.pid, signal.SIGKILL)
    shutil.rmtree(ray_temp, ignore_errors=True)
  assert sweep.returncode == 130, (stdout[-2000:], stderr[-2000:])
  assert stderr.strip().splitlines()[-1] == 'interrupted', stderr[-2000:]
  for name, pid in zip(names, holders):
    assert not workdir_lock.is_held(str(workdir / name))
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)
    assert not (workdir / name / 'sweep.json').exists()
    steps = [int(d) for d in os.listdir(workdir / name / 'checkpoints') if d.isdigit()]
    assert steps and max(steps) > 0, name   # the interrupted run's checkpoint
  assert not (workdir / 'results.csv').exists()
  assert not workdir_lock.is_held(str(workdir))
