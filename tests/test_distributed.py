"""Scale and reliability, as a user runs them (fresh processes): 8 forced CPU devices on
meshes 4 x 2 and 8 x 1, two processes over gloo, a checkpoint moved from 8 devices to 1,
SIGTERM, SIGKILL at random moments, damaged checkpoints and divergence."""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from attention.training import checkpointing, run_dir
from tests import e2e


# The copy task's defaults but with dropout (its masks must agree across meshes too) and
# the rsqrt schedule: the reference runs 24 steps and the others 20, and a cosine schedule
# would differ between them (it ends at num_steps).
RUN = ['--config=configs/default.py:task=copy,model=tiny', '--config.train.batch_size=8',
       '--config.model.dropout_rate=0.1', '--config.train.schedule=rsqrt',
       '--config.data.max_length=32', '--config.data.bucket_boundaries=(16,32)',
       '--config.train.warmup_steps=4', '--config.train.log_every_steps=2',
       '--config.eval.every_steps=1000', '--config.eval.num_examples=4',
       '--config.eval.test_examples=4', '--config.eval.batch_size=4',
       '--config.eval.beam_size=1', '--config.checkpoint.every_steps=10',
       '--config.data.num_shards=2']


def train(workdir, data_dir, steps, *extra, devices=None, check=True):
  out = e2e.run('train.py', *RUN, f'--config.data.data_dir={data_dir}',
                f'--config.train.num_steps={steps}', f'--workdir={workdir}', *extra,
                devices=devices)
  if check:
    assert out.returncode == 0, out.stderr[-3000:]
  return out


def losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return {r['step']: r['loss'] for r in map(json.loads, f) if r['split'] == 'train'}


def final_state(workdir):
  config = run_dir.load_config(str(workdir))
  ckpts = checkpointing.Checkpoints(str(workdir), create=False)
  try:
    state, step = ckpts.restore(run_dir.abstract_state(config), log=lambda *_: None)
  finally:
    ckpts.close()
  return step, [np.asarray(x) for x in jax.tree_util.tree_leaves(state)]


@pytest.fixture
def one_device(data_dir, once):
  """The reference: 24 steps on one device (its losses at 2, 4, ..., 24)."""
  def build(directory):
    train(directory / 'run', data_dir, 24)
  return once('one_device', build)[0] / 'run'


@pytest.mark.slow
@pytest.mark.parametrize('mesh,fsdp', [((4, 2), False), ((8, 1), True)],
                         ids=['4x2-tensor-parallel', '8x1-fsdp'])
def test_eight_devices_log_the_losses_of_one(one_device, data_dir, tmp_path, mesh, fsdp):
  reference = losses(one_device)
  workdir = tmp_path / 'run'
  out = train(workdir, data_dir, 20, f'--config.mesh.data={mesh[0]}',
              f'--config.mesh.model={mesh[1]}', f'--config.mesh.fsdp={fsdp}', devices=8)
  layout = next(line for line in out.stdout.splitlines() if line.startswith('mesh '))
  assert f'mesh data={mesh[0]} x model={mesh[1]} over 8 device(s)' in layout
  split = int(layout.split(': ')[1].split()[0])
  assert split > 0, layout   # heads and d_ff over `model`, or d_model over `data` (FSDP)
  got = losses(workdir)
  assert sorted(got) == list(range(2, 21, 2))
  for step, loss in got.items():
    np.testing.assert_allclose(loss, reference[step], rtol=1e-4, err_msg=f'step {step}')
  if mesh == (4, 2):
    # The checkpoint of 4 x 2 devices restores on one device and trains on.
    train(workdir, data_dir, 24, '--config.mesh.data=-1', '--config.mesh.model=1')
    resumed = losses(workdir)
    for step in (22, 24):
      np.testing.assert_allclose(resumed[step], reference[step], rtol=1e-4, err_msg=f'step {step}')


def free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_log_the_losses_of_one(one_device, data_dir, tmp_path):
  reference = losses(one_device)
  workdir = tmp_path / 'run'
  address = f'localhost:{free_port()}'
  command = [sys.executable, os.path.join(e2e.ROOT, 'train.py'), *RUN,
             f'--config.data.data_dir={data_dir}', '--config.train.num_steps=20',
             f'--workdir={workdir}', f'--coordinator_address={address}', '--num_processes=2']
  procs = [subprocess.Popen(command + [f'--process_id={i}'], cwd=e2e.ROOT, env=e2e.environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  got = losses(workdir)
  assert sorted(got) == list(range(2, 21, 2))
  for step, loss in got.items():
    np.testing.assert_allclose(loss, reference[step], rtol=1e-4, err_msg=f'step {step}')
  # Each process saved its own data position; process 0 alone wrote the logs.
  saved = os.listdir(workdir / 'checkpoints' / '20' / 'data')
  assert sorted(f for f in saved if f.endswith('.json')) == ['process_0-of-2.json',
                                                             'process_1-of-2.json']


def wait_for_steps(workdir, steps, proc, timeout=300):
  """Blocks until metrics.jsonl logs `steps` (or the process ends)."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if (workdir / 'metrics.jsonl').exists() and max(losses(workdir), default=0) >= steps:
      return
    time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_rerun_finishes_bit_for_bit(one_device, data_dir, tmp_path):
  workdir = tmp_path / 'run'
  command = [sys.executable, os.path.join(e2e.ROOT, 'train.py'), *RUN,
             f'--config.data.data_dir={data_dir}', '--config.train.num_steps=24',
             f'--workdir={workdir}']
  proc = subprocess.Popen(command, cwd=e2e.ROOT, env=e2e.environment(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  wait_for_steps(workdir, 4, proc)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  assert 'SIGTERM: stopped after step' in out + err
  step = int((out + err).split('stopped after step ')[1].split()[0])
  assert 4 <= step < 24
  assert str(step) in os.listdir(workdir / 'checkpoints')
  assert not (workdir / 'eval' / 'test.json').exists()   # the run is not over
  rerun = train(workdir, data_dir, 24)
  assert f'resumed from step {step}' in rerun.stdout, rerun.stdout[-2000:]
  assert losses(workdir) == losses(one_device)
  _, got = final_state(workdir)
  _, expected = final_state(one_device)
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_second_writer_is_refused_and_eval_reads_a_run_in_progress(one_device, data_dir,
                                                                     tmp_path):
  """train.py twice on one workdir: the second stops at once, exit 2, one line naming the
  holder, and the first ends as a run alone does (every logged loss and parameter bit).
  eval.py meanwhile scores the newest complete checkpoint of the running run."""
  workdir = tmp_path / 'run'
  command = [sys.executable, os.path.join(e2e.ROOT, 'train.py'), *RUN,
             f'--config.data.data_dir={data_dir}', '--config.train.num_steps=24',
             f'--workdir={workdir}']
  first = subprocess.Popen(command, cwd=e2e.ROOT, env=e2e.environment(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while first.poll() is None and time.time() < deadline and not (
      (workdir / 'lock').exists() and (workdir / 'lock').read_text()):
    time.sleep(0.1)   # the lock names its holder once the run starts writing
  assert first.poll() is None, first.stderr.read()[-3000:]
  start = time.time()
  second = e2e.run('train.py', *RUN, f'--config.data.data_dir={data_dir}',
                   '--config.train.num_steps=24', f'--workdir={workdir}')
  assert time.time() - start < 30
  assert second.returncode == 2, second.stderr[-3000:]
  error = [line for line in second.stderr.splitlines() if line.startswith('error: ')]
  assert len(error) == 1 and f'--workdir={workdir} is in use by process {first.pid}' in error[0]

  while first.poll() is None and not checkpoint_steps(workdir) and time.time() < deadline:
    time.sleep(0.1)
  running = first.poll() is None
  scored = e2e.run('eval.py', f'--workdir={workdir}', '--num_examples=2', '--split=validation')
  assert running and scored.returncode == 0, scored.stderr[-3000:]
  step = json.loads((workdir / 'eval' / 'validation.json').read_text())['step']
  assert step in (10, 20, 24)

  out, err = first.communicate(timeout=600)
  assert first.returncode == 0, err[-3000:]
  assert losses(workdir) == losses(one_device)
  _, got = final_state(workdir)
  _, expected = final_state(one_device)
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(a, b)


def checkpoint_steps(workdir):
  directory = workdir / 'checkpoints'
  return sorted(int(s) for s in os.listdir(directory) if s.isdigit()) if directory.exists() else []


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_is_bit_for_bit(one_device, data_dir, tmp_path):
  """Five kills: one during start-up, then each a random moment after the run has written
  a new checkpoint (a step, a log line, the next checkpoint's write). Checkpoints every 3
  steps and logs every 2, so most resumes start inside a log window. Re-running the same
  command ends exactly where the uninterrupted run ended: every logged loss and every
  parameter bit. Then, deterministically: the run put back to its checkpoint at step 9
  (between log steps 8 and 10) resumes there and logs step 10 as the reference did."""
  rng = random.Random()
  seed = rng.randrange(2**31)
  rng.seed(seed)
  workdir = tmp_path / 'run'
  every3 = ['--config.checkpoint.every_steps=3', '--config.checkpoint.keep=8']
  command = [sys.executable, os.path.join(e2e.ROOT, 'train.py'), *RUN,
             f'--config.data.data_dir={data_dir}', '--config.train.num_steps=24', *every3,
             f'--workdir={workdir}']
  resumed = []
  for kill in range(5):
    last = max(checkpoint_steps(workdir), default=0)
    with open(tmp_path / f'run{kill}.log', 'w') as log:
      proc = subprocess.Popen(command, cwd=e2e.ROOT, env=e2e.environment(), stdout=log,
                              stderr=subprocess.STDOUT)
      if kill == 0:
        time.sleep(rng.uniform(0.5, 3.0))
      else:
        deadline = time.time() + 240
        while (max(checkpoint_steps(workdir), default=0) <= last and proc.poll() is None
               and time.time() < deadline):
          time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
      finished = proc.poll() is not None
      proc.kill()
      proc.wait()
    text = (tmp_path / f'run{kill}.log').read_text()
    resumed += [int(n) for n in re.findall(r'resumed from step (\d+)', text)]
    if finished:   # it reached the end before this kill: nothing left to interrupt
      assert proc.returncode == 0, text[-3000:]
      break
  out = train(workdir, data_dir, 24, *every3)
  resumed += [int(n) for n in re.findall(r'resumed from step (\d+)', out.stdout)]
  assert resumed and max(resumed) >= 3, f'no run resumed (kill seed {seed}): {resumed}'
  assert losses(workdir) == losses(one_device), f'kill seed {seed}, resumed at {resumed}'
  _, got = final_state(workdir)
  _, expected = final_state(one_device)
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(a, b, err_msg=f'kill seed {seed}, resumed at {resumed}')
  # As if the process had died right after writing checkpoint 9: what came later is gone.
  for kind in ('checkpoints', 'checkpoints_best'):
    for step in os.listdir(workdir / kind):
      if step.isdigit() and int(step) > 9:
        shutil.rmtree(workdir / kind / step)
  (workdir / 'eval' / 'test.json').unlink()
  out = train(workdir, data_dir, 24, *every3)
  assert 'resumed from step 9' in out.stdout, out.stdout[-2000:]
  assert losses(workdir) == losses(one_device)
  _, got = final_state(workdir)
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_divergence_stops_with_the_step_and_keeps_the_checkpoint(data_dir, tmp_path):
  workdir = tmp_path / 'run'
  blow_up = ['--config.train.learning_rate=1e30', '--config.train.warmup_steps=0',
             '--config.train.schedule=constant', '--config.train.grad_clip=0.0',
             '--config.train.log_every_steps=1', '--config.checkpoint.every_steps=1']
  out = train(workdir, data_dir, 6, *blow_up, check=False)
  assert out.returncode != 0
  line = [l for l in out.stderr.splitlines() if l.strip()][-1]
  assert line.startswith('error: step ') and 'not finite' in line, out.stderr[-2000:]
  bad_step = int(line.split('error: step ')[1].split(':')[0])
  assert bad_step >= 2
  kept = sorted(int(s) for s in os.listdir(workdir / 'checkpoints'))
  assert kept and kept[-1] == bad_step - 1
  step, leaves = final_state(workdir)   # intact: passes its manifest and restores
  assert step == bad_step - 1
  assert all(np.isfinite(x).all() for x in leaves if x.dtype.kind == 'f')

  skipping = tmp_path / 'skip'
  train(skipping, data_dir, 6, *blow_up, '--config.train.skip_nonfinite=True')
  records = losses(skipping)
  with open(skipping / 'metrics.jsonl') as f:
    skipped = [r['skipped_steps'] for r in map(json.loads, f) if r['split'] == 'train']
  assert sorted(records) == list(range(1, 7)) and skipped[-1] >= 1, skipped
  _, leaves = final_state(skipping)
  assert all(np.isfinite(x).all() for x in leaves if x.dtype.kind == 'f')
