"""Running the points as SLURM jobs through submitit: one job array of the points not
done, each job running its point's train.py command with --cpus_per_point CPUs,
--gpus_per_point GPUs, in --slurm_partition, for at most --slurm_time_min minutes; with
--parallel, at most that many at once (the array's throttle).

A job's time limit and a preemption are a run's preemption: SLURM warns the job (submitit
asks for SIGUSR2 ahead of the limit), the job stops its run with SIGTERM (train.py
checkpoints and exits) and requeues itself, and the requeued job resumes the run from
its checkpoint. Ctrl-C cancels the jobs (SIGTERM to their processes: the runs checkpoint),
waits for them to end and leaves finished points as they are; a re-run resumes the others.

As with Ray, the checkout, its environment, the data and the sweep directory must be at
the same paths on every node (a shared file system). submitit keeps each job's files
(pickles, its own stdout and stderr) in DIR/slurm_jobs/; the run's output is the point's
sweep.log as with every launcher. --slurm_cluster=local runs the same jobs through
submitit's local executor, as processes on this machine: a SLURM sweep tried without a
cluster, preemption included."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time

from attention import UserError
from attention.training import workdir_lock
from sweeping import node, outcomes
from sweeping.node import Run
from sweeping.points import Point

JOBS_DIR = 'slurm_jobs'
POLL_S = 0.5


class PointJob:
  """The job of one point: its run, stopped and requeued on SLURM's warning (submitit
  calls checkpoint() and submits what it returns again). `before` carries the wall and
  CPU seconds of the attempts before this one."""

  def __call__(self, command: list[str], cwd: str, log_path: str, cpus: int,
               attempt: int = 0, before: tuple[float, float] = (0.0, 0.0)) -> dict:
    self.run = Run(command, cwd, log_path, cpus, append=attempt > 0)
    # submitit ignores SIGTERM in a job (SLURM sends it to every process of the job, the
    # run included); the local executor sends it to the job alone: pass it on.
    signal.signal(signal.SIGTERM, lambda *_: self.run.proc.send_signal(signal.SIGTERM))
    out = self.run.wait()
    return dict(out, attempts=attempt + 1, before=before, gpus=[
        g for g in os.environ.get('CUDA_VISIBLE_DEVICES', '').split(',') if g])

  def checkpoint(self, command, cwd, log_path, cpus, attempt=0, before=(0.0, 0.0)):
    import submitit
    run = getattr(self, 'run', None)
    if run is not None:
      run.stop()
      usage = run.outcome['usage']
      before = (before[0] + run.outcome['wall_s'],
                before[1] + usage.ru_utime + usage.ru_stime)
    return submitit.helpers.DelayedSubmission(PointJob(), command, cwd, log_path, cpus,
                                              attempt + 1, before)

  def __getstate__(self):   # a requeued job starts a run of its own
    return {}


def require_submitit(cluster: str):
  try:
    import submitit
  except ImportError:
    raise UserError("--launcher=slurm needs submitit: pip install -e '.[cluster]'") from None
  if cluster == 'slurm' and shutil.which('sbatch') is None:
    raise UserError('--launcher=slurm: no sbatch on this machine (run the sweep on a SLURM '
                    'login node, or --slurm_cluster=local to run its jobs here)')
  return submitit


def executor_for(workdir: str, cluster: str, cpus: int, gpus: int, time_min: int,
                 partition: str | None, parallel: int, name: str):
  submitit = require_submitit(cluster)
  if cluster == 'local' and gpus:
    raise UserError('--gpus_per_point with --slurm_cluster=local: submitit gives every job '
                    'the same GPUs; --launcher=local gives each point its own')
  # The job code travels by value, as with Ray: the node imports nothing of scripts/.
  import cloudpickle   # submitit's own pickler
  cloudpickle.register_pickle_by_value(sys.modules[__name__])
  cloudpickle.register_pickle_by_value(node)
  executor = submitit.AutoExecutor(folder=os.path.join(workdir, JOBS_DIR),
                                   cluster=cluster)
  settings = dict(timeout_min=time_min, cpus_per_task=cpus, gpus_per_node=gpus, nodes=1,
                  tasks_per_node=1, name=name, slurm_array_parallelism=parallel)
  if partition:
    settings['slurm_partition'] = partition
  executor.update_parameters(**settings)
  return executor


def stop(job, cluster: str) -> None:
  """Cancels a running job as SLURM does (SIGTERM to its processes). The local executor's
  own cancel sends SIGINT and kills the job a second later, before its run can checkpoint;
  its job id is the pid of the process that runs the job."""
  if cluster == 'local':
    try:
      os.kill(int(job.job_id), signal.SIGTERM)
    except ProcessLookupError:
      pass
  else:
    job.cancel(check=False)


@contextlib.contextmanager
def sigint_ignored_by_children(cluster: str):
  """With the local executor, the processes that run the jobs are this one's children, in
  the terminal's process group: started with SIGINT ignored (kept across exec), a Ctrl-C
  reaches this sweep, which stops the jobs with SIGTERM, and the runs (train.py takes
  SIGINT again), rather than the executor, which would kill a job a second later."""
  if cluster != 'local':
    yield
    return
  previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)


def run_points(points: list[Point], workdir: str, cluster: str = 'slurm', parallel: int = 0,
               cpus_per_point: int = 0, gpus_per_point: int = 0, time_min: int = 240,
               partition: str | None = None) -> None:
  """Runs the points not done yet as one job array. Submits nothing when all are done."""
  todo = outcomes.to_run(points)
  if not todo:
    return
  cpus = cpus_per_point or 1
  executor = executor_for(workdir, cluster, cpus, gpus_per_point, time_min, partition,
                          parallel or len(todo), os.path.basename(os.path.abspath(workdir)))
  for point in todo:
    os.makedirs(point.workdir, exist_ok=True)
  # The local executor starts every job it is given at once: give it `parallel` at a time.
  wave = len(todo) if cluster == 'slurm' or not parallel else parallel
  running = {}   # job -> (point, submission time)
  count, total = 0, len(todo)
  try:
    while todo or running:
      if todo and len(running) < wave:
        batch, todo = todo[:wave - len(running)], todo[wave - len(running):]
        with sigint_ignored_by_children(cluster):
          jobs = executor.map_array(PointJob(), [p.command for p in batch],
                                    [os.getcwd()] * len(batch),
                                    [os.path.abspath(outcomes.log_path(p)) for p in batch],
                                    [cpus] * len(batch))
        for point, job in zip(batch, jobs):
          count += 1
          running[job] = (point, time.time())
          print(f'[{count}/{total}] {point.name}: submitted as job {job.job_id}', flush=True)
      time.sleep(POLL_S)
      for job in [j for j in running if j.done()]:
        point, submitted = running.pop(job)
        try:
          out = job.result()
        except Exception as e:  # noqa: BLE001 - submitit's FailedJobError, UncompletedJobError
          line = str(e).strip().splitlines()[0] if str(e).strip() else ''
          outcomes.finish(point, -1, time.time() - submitted, error=f'slurm: '
                          f'{type(e).__name__} {line}'.strip(), launcher='slurm',
                          job=job.job_id)
          continue
        used = outcomes.usage(out['usage'])   # this attempt's, and those before it
        used['cpu_s'] = round(used['cpu_s'] + out['before'][1], 1)
        outcomes.finish(point, out['returncode'], out['wall_s'] + out['before'][0],
                        launcher='slurm', job=job.job_id, attempts=out['attempts'],
                        host=out['host'], gpus=out['gpus'], **used)
  except KeyboardInterrupt:
    for job in running:
      stop(job, cluster)
    while not all(job.done() for job in running):
      time.sleep(POLL_S)
    while any(workdir_lock.is_held(point.workdir) for point, _ in running.values()):
      time.sleep(POLL_S)
    raise
