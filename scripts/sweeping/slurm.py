"""Running the points as SLURM jobs through submitit: one job array of the points not
done, each job running its point's train.py command with --cpus_per_point CPUs,
--gpus_per_point GPUs, in --slurm_partition, for at most --slurm_time_min minutes, with
any other sbatch option from --slurm_options; with --parallel, at most that many at once
(the array's throttle).

Time limits: submitit asks SLURM for SIGUSR2 some minutes before a job's limit; the job
then stops its run with SIGTERM (train.py checkpoints and exits), submitit requeues the
same job, and the job resumes the run from its checkpoint, up to MAX_TIME_LIMITS times.
A preemption is the same where the cluster warns with a signal first (PreemptParameters
send_user_signal); SLURM's default preemption sends SIGTERM, which reaches the run:
it checkpoints and the point is recorded as stopped, resumed by a re-run of the sweep.
Ctrl-C cancels the jobs (SIGTERM to their processes: the runs checkpoint), waits for them
to end and leaves finished points as they are; a re-run resumes the others.

As with Ray, the checkout, its environment, the data and the sweep directory must be at
the same paths on every node (a shared file system). The sweep waits on the login node
for its jobs: run it where it survives a logout (tmux, or a job of its own). submitit
keeps each job's own files (pickles, stdout, stderr) in DIR/slurm_jobs/; the run's output
is the point's sweep.log as with every launcher. --slurm_cluster=local runs the same jobs
through submitit's local executor, as processes on this machine: a SLURM sweep tried
without a cluster, time limits and their requeues included."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time

from attention import UserError
from sweeping import node, outcomes
from sweeping.node import Run
from sweeping.points import Point

JOBS_DIR = 'slurm_jobs'
# How often the sweep asks about its jobs: every query of a SLURM job reads its files on
# the shared file system (and, now and then, sacct).
POLL_S = {'slurm': 10.0, 'local': 0.5}
# A run resumes from its checkpoint, so every requeue at a time limit makes progress; the
# bound only stops a run that cannot reach a checkpoint within --slurm_time_min.
MAX_TIME_LIMITS = 20


class PointJob:
  """The job of one point: its run, stopped on SLURM's warning before a time limit, when
  submitit calls checkpoint() and requeues the job with what it returns. `before`
  carries the wall and CPU seconds of the attempts before this one."""

  def __call__(self, command: list[str], cwd: str, log_path: str, cpus: int,
               attempt: int = 0, before: tuple[float, float] = (0.0, 0.0)) -> dict:
    # submitit ignores SIGTERM in a job (SLURM sends it to every process of the job, the
    # run included); the local executor sends it to the job alone: pass it on, also when
    # it comes while the run is starting.
    self.run, self.terminated = None, False
    signal.signal(signal.SIGTERM, self._on_sigterm)
    self.run = Run(command, cwd, log_path, cpus, append=True)   # the sweep empties the log
    if self.terminated:
      self.run.signal(signal.SIGTERM)
    out = self.run.wait()
    return dict(out, attempts=attempt + 1, before=before, gpus=[
        g for g in os.environ.get('CUDA_VISIBLE_DEVICES', '').split(',') if g])

  def _on_sigterm(self, *_):
    self.terminated = True
    if self.run is not None:
      self.run.signal(signal.SIGTERM)

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
  missing = [c for c in ('sbatch', 'srun') if shutil.which(c) is None]
  if cluster == 'slurm' and missing:
    raise UserError(f'--launcher=slurm: no {" or ".join(missing)} on this machine (run the '
                    'sweep on a SLURM login node, or --slurm_cluster=local to run its jobs '
                    'here)')
  return submitit


def parse_options(options: list[str]) -> dict:
  """--slurm_options=account=proj,qos=high,mem=32G: sbatch options by their long names."""
  parsed = {}
  for option in options:
    key, equals, value = option.partition('=')
    if not equals or not key.strip():
      raise UserError(f'--slurm_options: {option!r} is not KEY=VALUE (an sbatch option by '
                      'its long name, e.g. account=proj or mem=32G)')
    parsed[key.strip().replace('-', '_')] = value.strip()
  return parsed


def executor_for(workdir: str, cluster: str, cpus: int, gpus: int, time_min: int,
                 partition: str | None, options: dict, parallel: int, name: str):
  submitit = require_submitit(cluster)
  if cluster == 'local' and gpus:
    raise UserError('--gpus_per_point with --slurm_cluster=local: submitit gives every job '
                    'the same GPUs; --launcher=local gives each point its own')
  # The job code travels by value, as with Ray: the node imports nothing of scripts/.
  import cloudpickle   # submitit's own pickler
  cloudpickle.register_pickle_by_value(sys.modules[__name__])
  cloudpickle.register_pickle_by_value(node)
  executor = submitit.AutoExecutor(folder=os.path.join(workdir, JOBS_DIR), cluster=cluster,
                                   slurm_max_num_timeout=MAX_TIME_LIMITS,
                                   local_max_num_timeout=MAX_TIME_LIMITS)
  settings = dict(timeout_min=time_min, cpus_per_task=cpus, nodes=1, tasks_per_node=1,
                  name=name, slurm_array_parallelism=parallel,
                  # Time for a step and a checkpoint between the warning and the limit.
                  slurm_signal_delay_s=min(300, time_min * 15),
                  # srun does not take the job's --cpus-per-task from sbatch everywhere.
                  slurm_srun_args=['--cpus-per-task', str(cpus)])
  if gpus:   # some clusters without GPUs refuse even --gpus-per-node=0
    settings['gpus_per_node'] = gpus
  if partition:
    settings['slurm_partition'] = partition
  if options:
    settings['slurm_additional_parameters'] = options
  executor.update_parameters(**settings)
  return executor


def stop(job, cluster: str) -> None:
  """Cancels a running job as SLURM does (SIGTERM to its processes). The local executor's
  own cancel sends SIGINT and kills the job a second later, before its run can checkpoint;
  its job id is the pid of the process that controls the job, which passes SIGTERM on."""
  if cluster == 'local':
    try:
      os.kill(int(job.job_id), signal.SIGTERM)
    except ProcessLookupError:
      pass
  else:
    job.cancel(check=False)


@contextlib.contextmanager
def sigint_held():
  """Blocks SIGINT while jobs are submitted and recorded: a Ctrl-C then lands once every
  submitted job is known and can be cancelled. What starts meanwhile keeps it blocked
  (sbatch; the local executor's job processes and their runs), so that with the local
  executor a Ctrl-C reaches this sweep, which stops the jobs with SIGTERM, rather than
  the executor, which would kill a job a second later."""
  signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
  try:
    yield
  finally:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def reason(error: Exception) -> str:
  """One line of why a job failed: submitit's messages start with the job's path; its
  state (TIMEOUT, NODE_FAIL, ...) or the error that ended its traceback is what says why."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  state = [line for line in lines if 'state:' in line]
  return (state or lines or [''])[-1]


def run_points(points: list[Point], workdir: str, cluster: str = 'slurm', parallel: int = 0,
               cpus_per_point: int = 0, gpus_per_point: int = 0, time_min: int = 240,
               partition: str | None = None, options: dict | None = None) -> None:
  """Runs the points not done yet as one job array. Submits nothing when all are done."""
  todo = outcomes.to_run(points)
  if not todo:
    return
  cpus = cpus_per_point or 1
  executor = executor_for(workdir, cluster, cpus, gpus_per_point, time_min, partition,
                          options or {}, parallel or len(todo),
                          os.path.basename(os.path.abspath(workdir)))
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
        with sigint_held():
          for point in batch:   # a job appends to it, over its requeues
            open(outcomes.log_path(point), 'w').close()
          jobs = executor.map_array(PointJob(), [p.command for p in batch],
                                    [os.getcwd()] * len(batch),
                                    [os.path.abspath(outcomes.log_path(p)) for p in batch],
                                    [cpus] * len(batch))
          for point, job in zip(batch, jobs):
            count += 1
            running[job] = (point, time.time())
            print(f'[{count}/{total}] {point.name}: submitted as job {job.job_id}', flush=True)
      time.sleep(POLL_S[cluster])
      for job in [j for j in running if j.done()]:
        point, submitted = running.pop(job)
        try:
          out = job.result()
        except Exception as e:  # noqa: BLE001 - submitit's FailedJobError, UncompletedJobError
          outcomes.finish(point, -1, time.time() - submitted,
                          error=f'slurm: {type(e).__name__} {reason(e)}'.strip(),
                          launcher='slurm', job=job.job_id)
          continue
        used = outcomes.usage(out['usage'])   # this attempt's, and those before it
        used['cpu_s'] = round(used['cpu_s'] + out['before'][1], 1)
        outcomes.finish(point, out['returncode'], out['wall_s'] + out['before'][0],
                        launcher='slurm', job=job.job_id, attempts=out['attempts'],
                        host=out['host'], gpus=out['gpus'], **used)
  except KeyboardInterrupt:
    for job in running:
      stop(job, cluster)
    # force_check: ask SLURM now rather than wait for submitit's next look at sacct.
    while not all(job.done(force_check=True) for job in running):
      time.sleep(POLL_S[cluster])
    outcomes.wait_for_runs([point for point, _ in running.values()])
    raise
