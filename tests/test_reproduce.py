"""scripts/reproduce.py: a real job re-measures recorded numbers; matching values pass,
a recorded value moved past its tolerance fails with exit status 1; --list runs nothing."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests import e2e

MEMORY_FILES = ('kernels_memory/avx2/bench.json',)


def reproduce(*args):
  return e2e.run('scripts/reproduce.py', *args)


def test_list_names_every_job_and_runs_nothing(tmp_path):
  out = reproduce('--list', f'--workdir={tmp_path / "w"}')
  assert out.returncode == 0, out.stderr
  for job in ('kernels_quick (quick)', 'kernels_memory (quick)', 'train_default',
              'train_copy_tiny (quick)', 'study_positional', 'study_attention_vs_recurrence',
              'study_kernels', 'study_table3', 'model_vs_flax_wmt'):
    assert job in out.stdout, job
  assert 'not checked: docs/development_log.md' in out.stdout
  assert not (tmp_path / 'w').exists()


def _jobs_and_claims():
  """{job name: [the `where` of each of its claims]}, from reproduce.py's table."""
  code = ('import json, sys; sys.path.insert(0, "scripts"); from reproducing import jobs; '
          'claims = jobs.all_claims("results"); '
          'print(json.dumps({j.name: [c.where for c in claims if c.job == j.name] '
          'for j in jobs.JOBS}))')
  out = subprocess.run([sys.executable, '-c', code], cwd=e2e.ROOT, capture_output=True,
                       text=True, env=e2e.environment(), timeout=300)
  assert out.returncode == 0, out.stderr
  return json.loads(out.stdout)


def _sections(text):
  """The headings and bold paragraph titles of a Markdown document, lower-cased."""
  titles = re.findall(r'^#+ (.+)$', text, flags=re.M) + re.findall(r'\*\*([^*]+)\*\*', text)
  return [t.lower() for t in titles]


def test_documents_and_jobs_cite_each_other():
  """Every `reproduce.py --only=` in README.md, BENCHMARKS.md and the docs/ topic pages
  names a job, every job is cited in one of them, and every claim names a document and a
  section of it that exist: a renamed job or section, or a new job nobody quotes, fails
  here."""
  jobs = _jobs_and_claims()
  pages = [f'docs/{p[:-3]}' for p in sorted(os.listdir(os.path.join(e2e.ROOT, 'docs')))
           if p.endswith('.md') and p != 'development_log.md']
  docs = {name: open(os.path.join(e2e.ROOT, f'{name}.md')).read()
          for name in ('README', 'BENCHMARKS', *pages)}
  cited = set()
  for text in docs.values():
    for names in re.findall(r'reproduce\.py[^`\n]*--only=([\w,]+)', text):
      cited.update(n for n in names.split(',') if n != 'study_NAME')   # a pattern, not a job
  assert cited - set(jobs) == set(), f'cited, but no such job: {sorted(cited - set(jobs))}'
  assert set(jobs) - cited == set(), f'jobs cited nowhere: {sorted(set(jobs) - cited)}'
  for job, wheres in jobs.items():
    for where in set(wheres):
      doc, _, section = where.partition(', ')
      assert doc in docs and section, (job, where)
      section = re.sub(r' \(.*\)$', '', section).lower()   # 'Studies (positional)'
      assert any(section in title for title in _sections(docs[doc])), (job, where)


@pytest.mark.parametrize('args, message', [
    (['--only=kernels_nope'], "--only: unknown job 'kernels_nope'; allowed: kernels_full"),
    (['--only='], '--only is empty; name one or more jobs, allowed:'),   # not: run them all
    (['--only=kernels_memory', '--results_dir={tmp}/nowhere'], '--results_dir: '),
    (['--only=kernels_memory', '--workdir=/dev/null/w'], '--workdir: cannot create /dev/null/w'),
    (['--quick=maybe'], 'flag --quick=maybe'),
    (['kernels_memory'], "unexpected arguments ['kernels_memory']"),
])
def test_bad_input_is_one_line_and_runs_nothing(tmp_path, args, message):
  args = [a.replace('{tmp}', str(tmp_path)) for a in args]
  if not any(a.startswith('--workdir') for a in args):
    args.append(f'--workdir={tmp_path / "w"}')
  out = reproduce(*args)
  assert out.returncode == 2, out.stdout + out.stderr
  assert out.stderr.count('\n') == 1 and out.stderr.startswith('error: ' + message), out.stderr
  assert 'Traceback' not in out.stderr and not (tmp_path / 'w').exists()


@pytest.mark.slow
def test_claims_pass_within_tolerance_and_fail_past_it(tmp_path):
  """kernels_memory compiles four kernels at 16384 (runs none) and reads their compiled
  temporary bytes. Recorded values equal to what the job produced pass; one moved by 5%
  (its tolerance is 2%) fails and the command exits 1. The job runs once: the second and
  third calls find DIR/kernels_memory/done.json."""
  recorded = tmp_path / 'results'
  for name in MEMORY_FILES:
    (recorded / name).parent.mkdir(parents=True)
    shutil.copyfile(os.path.join(e2e.ROOT, 'results', name), recorded / name)
  workdir = tmp_path / 'w'
  args = ['--only=kernels_memory', f'--workdir={workdir}', f'--results_dir={recorded}']
  first = reproduce(*args)
  assert 'kernels_memory] ran' in first.stdout, first.stdout + first.stderr

  produced = json.loads((workdir / 'kernels_memory' / 'bench.json').read_text())['rows']
  temp = {r['candidate']: r['temp_bytes'] for r in produced}
  assert set(temp) == {'flash', 'reference', 'local', 'linear'}
  assert temp['reference'] > 32 * temp['flash']   # the O(L^2) logits against O(L) tiles

  def rewrite(scale_flash):
    for name in MEMORY_FILES:
      data = json.loads((recorded / name).read_text())
      for r in data['rows']:
        if r['length'] == 16384 and not r['causal'] and r['pass'] == 'fwd_bwd' \
            and r['candidate'] in temp:
          r['temp_bytes'] = temp[r['candidate']] * (scale_flash if r['candidate'] == 'flash'
                                                    else 1)
      (recorded / name).write_text(json.dumps(data))

  rewrite(1.0)
  same = reproduce(*args)
  assert same.returncode == 0, same.stdout + same.stderr
  assert 'kernels_memory] done' in same.stdout
  assert '5 passed, 0 failed' in same.stdout, same.stdout
  # Its wall time is shown, this run's against none recorded, and counted as no claim.
  wall = next(r for r in json.loads((workdir / 'reproduce.json').read_text())
              if r['claim'] == 'kernels_memory: wall time (s)')
  assert wall['status'] == 'info' and wall['now'] > 0 and 'recorded' not in wall
  assert 'of 5 claims; 1 wall times shown' in same.stdout, same.stdout

  rewrite(1.05)
  moved = reproduce(*args)
  assert moved.returncode == 1, moved.stdout + moved.stderr
  assert '3 passed, 2 failed' in moved.stdout, moved.stdout
  results = json.loads((workdir / 'reproduce.json').read_text())
  failed = sorted(r['claim'] for r in results if r['status'] == 'FAIL')
  assert failed == ['flash fwd+bwd 16384: XLA temporaries (MiB)',
                    'fwd+bwd 16384: reference / flash temporaries']


def test_timings_are_compared_only_between_machines_of_one_kind(tmp_path):
  """kernels_quick's claims read flash-vs-jax.nn ratios. With the job marked done (no
  kernel runs), a produced file from a machine with another vector ISA is reported as not
  comparable, not as a pass or a failure; from the same kind of machine, a ratio 2x off
  its recorded value fails."""
  def bench(isa, speedup):
    rows = [{'candidate': 'flash', 'length': 1024, 'causal': causal, 'pass': pass_,
             'speedup_vs_jax.nn': speedup} for causal in (False, True)
            for pass_ in ('fwd', 'fwd_bwd')]
    return json.dumps({'machine': {'cpu': 'x', 'cpu_id': 'family 1 model 1', 'isa': isa,
                                   'devices': ['cpu']}, 'rows': rows})

  recorded = tmp_path / 'results' / 'kernels_full'
  (recorded / 'avx512').mkdir(parents=True)
  (recorded / 'avx512' / 'bench.json').write_text(bench('avx512', 2.0))
  job = tmp_path / 'w' / 'kernels_quick'
  job.mkdir(parents=True)
  (job / 'done.json').write_text('{}')
  args = ['--only=kernels_quick', f'--workdir={tmp_path / "w"}',
          f'--results_dir={tmp_path / "results"}']

  (job / 'bench.json').write_text(bench('avx2', 1.0))
  other = reproduce(*args)
  assert other.returncode == 0, other.stdout + other.stderr
  assert '0 passed, 0 failed, 4 not comparable' in other.stdout, other.stdout
  assert 'recorded on avx512 (family 1 model 1, cpu), measured on avx2' in other.stdout

  (job / 'bench.json').write_text(bench('avx512', 1.0))
  same = reproduce(*args)
  assert same.returncode == 1, same.stdout + same.stderr
  assert '0 passed, 4 failed, 0 not comparable' in same.stdout, same.stdout

  # The job's own recording, from this kind of machine, comes before the full table's.
  quick = tmp_path / 'results' / 'kernels_quick' / 'avx512'
  quick.mkdir(parents=True)
  (quick / 'bench.json').write_text(bench('avx512', 1.1))
  own = reproduce(*args)
  assert own.returncode == 0, own.stdout + own.stderr
  assert '4 passed, 0 failed' in own.stdout, own.stdout

  # A recording of the same job from this kind of machine is used where it exists.
  (recorded / 'avx2').mkdir()
  (recorded / 'avx2' / 'bench.json').write_text(bench('avx2', 1.1))
  (job / 'bench.json').write_text(bench('avx2', 1.0))
  alt = reproduce(*args)
  assert alt.returncode == 0, alt.stdout + alt.stderr
  assert '4 passed, 0 failed, 0 not comparable' in alt.stdout, alt.stdout


def test_record_keeps_each_machine_kinds_files_apart(tmp_path):
  """--record of a finished kernels_full from an AVX2 host, where the first recording is
  from an AVX-512 one: the JSON, the table and the plot go to kernels_full/avx2/, and the
  AVX-512 recording's files are left as they were."""
  def machine(isa):
    return {'cpu': 'x', 'cpu_id': 'family 1 model 1', 'isa': isa, 'devices': ['cpu']}

  recorded = tmp_path / 'results' / 'kernels_full'
  (recorded / 'avx512').mkdir(parents=True)
  first = {'bench.json': json.dumps({'machine': machine('avx512'), 'rows': []}),
           'bench.md': 'avx512 table', 'bench.png': 'avx512 plot'}
  for name, text in first.items():
    (recorded / 'avx512' / name).write_text(text)
  job = tmp_path / 'w' / 'kernels_full'
  job.mkdir(parents=True)
  (job / 'done.json').write_text('{"wall_s": 12.5}')
  produced = {'bench.json': json.dumps({'machine': machine('avx2'), 'rows': []}),
              'bench.md': 'avx2 table', 'bench.png': 'avx2 plot'}
  for name, text in produced.items():
    (job / name).write_text(text)
  out = reproduce('--only=kernels_full', '--record', f'--workdir={tmp_path / "w"}',
                  f'--results_dir={tmp_path / "results"}')
  assert out.returncode == 0, out.stdout + out.stderr
  for name, text in first.items():
    assert (recorded / 'avx512' / name).read_text() == text
  for ext in ('json', 'md', 'png'):
    assert (recorded / 'avx2' / f'bench.{ext}').read_text() == produced[f'bench.{ext}']
  assert sorted(os.listdir(recorded)) == ['avx2', 'avx512']
  # The job's wall time, recorded under this host's vector ISA, to be shown by later runs.
  wall = json.loads((tmp_path / 'results' / 'wall_times.json').read_text())['kernels_full']
  assert [w['seconds'] for w in wall.values()] == [12.5]


def test_study_runs_are_compared_only_between_machines_of_one_kind(tmp_path):
  """A study's single runs (quality columns, and step times as each point's ratio to the
  first point) are compared only with a recording from the same kind of machine (the
  machine.json beside results.csv); parameter counts anywhere."""
  def study(directory, flash_ms, flash_bleu, isa):
    directory.mkdir(parents=True)
    (directory / 'results.csv').write_text(
        'model.attention_kernel,val_bleu,params,train_ms_per_step\n'
        f'reference,50.0,1000,100.0\nflash,{flash_bleu},1000,{flash_ms}\n')
    (directory / 'machine.json').write_text(json.dumps({'isa': isa, 'devices': ['cpu']}))

  study(tmp_path / 'results' / 'study_kernels' / 'avx512', 50.0, 51.0, 'avx512')
  job = tmp_path / 'w' / 'study_kernels'
  study(job, 100.0, 41.0, 'avx2')   # flash 2x slower relative to reference, and 10 BLEU off
  (job / 'done.json').write_text('{}')
  args = ['--only=study_kernels', f'--workdir={tmp_path / "w"}',
          f'--results_dir={tmp_path / "results"}']
  other = reproduce(*args)
  assert other.returncode == 0, other.stdout + other.stderr
  assert '2 passed, 0 failed, 3 not comparable' in other.stdout, other.stdout

  (job / 'machine.json').write_text(json.dumps({'isa': 'avx512', 'devices': ['cpu']}))
  same = reproduce(*args)
  assert same.returncode == 1, same.stdout + same.stderr
  assert '3 passed, 2 failed, 0 not comparable' in same.stdout, same.stdout
  assert 'flash: train_ms_per_step / first point' in same.stdout
  assert 'flash: val_bleu' in same.stdout


def test_record_keeps_a_study_from_another_machine_in_its_own_directory(tmp_path):
  """--record of a study finished on an AVX2 host, where the first recording is from an
  AVX-512 one: its files go to study_kernels/avx2/ and the AVX-512 recording is left as it
  was; checking the same run again then compares its step times with the AVX2 recording."""
  def study(directory, flash_ms, isa):
    directory.mkdir(parents=True)
    (directory / 'results.csv').write_text(
        'model.attention_kernel,val_bleu,params,train_ms_per_step\n'
        f'reference,50.0,1000,100.0\nflash,51.0,1000,{flash_ms}\n')
    (directory / 'machine.json').write_text(json.dumps({'isa': isa, 'devices': ['cpu']}))
    (directory / 'results.md').write_text(f'{isa} table')

  first = tmp_path / 'results' / 'study_kernels' / 'avx512'
  study(first, 50.0, 'avx512')
  job = tmp_path / 'w' / 'study_kernels'
  study(job, 100.0, 'avx2')
  (job / 'done.json').write_text('{}')
  args = ['--only=study_kernels', f'--workdir={tmp_path / "w"}',
          f'--results_dir={tmp_path / "results"}']
  out = reproduce(*args, '--record')
  assert out.returncode == 0, out.stdout + out.stderr
  assert (first / 'results.md').read_text() == 'avx512 table'
  assert '50.0' in (first / 'results.csv').read_text()
  for name in ('results.csv', 'machine.json', 'results.md'):
    assert (first.parent / 'avx2' / name).read_text() == (job / name).read_text(), name

  again = reproduce(*args)
  assert again.returncode == 0, again.stdout + again.stderr
  assert '5 passed, 0 failed, 0 not comparable' in again.stdout, again.stdout


def test_seed_means_are_compared_on_any_machine_within_the_seeds_range(tmp_path):
  """With seeds swept, summary.csv's means are compared whatever the machine, within the
  column's tolerance (2 BLEU) plus half the range the recorded seeds spanned (here 6)."""
  summary = ('model.positional,seeds,val_bleu,val_bleu_min,val_bleu_max,params\n'
             'rope,3,{},{},{},1000\n')
  recorded = tmp_path / 'results' / 'study_positional' / 'avx512'
  recorded.mkdir(parents=True)
  (recorded / 'summary.csv').write_text(summary.format(60.0, 54.0, 66.0))
  (recorded / 'machine.json').write_text(json.dumps({'isa': 'avx512', 'devices': ['cpu']}))
  job = tmp_path / 'w' / 'study_positional'
  job.mkdir(parents=True)
  (job / 'done.json').write_text('{}')
  (job / 'machine.json').write_text(json.dumps({'isa': 'avx2', 'devices': ['cpu']}))
  args = ['--only=study_positional', f'--workdir={tmp_path / "w"}',
          f'--results_dir={tmp_path / "results"}']
  for mean, status in ((67.9, 0), (52.1, 0), (68.1, 1)):
    (job / 'summary.csv').write_text(summary.format(mean, mean, mean))
    out = reproduce(*args)
    assert out.returncode == status, (mean, out.stdout + out.stderr)
    assert f'{1 - status} passed, {status} failed' in out.stdout, out.stdout
    assert 'rope: val_bleu, mean of 3 seeds' in out.stdout and '±8' in out.stdout


def test_machine_kind_is_the_vector_isa_and_devices():
  from attention.bench import machine
  here = machine.cpu()
  assert here['isa'] in ('avx512', 'avx2') or here['isa'] == os.uname().machine, here
  zen5 = {'isa': 'avx512', 'cpu_id': 'family 26 model 2', 'devices': ['cpu']}
  zen3 = {'isa': 'avx2', 'cpu_id': 'family 25 model 1', 'devices': ['cpu']}
  assert machine.same_kind(zen5, dict(zen5, cpu_id='family 26 model 9')) is None
  assert machine.same_kind(zen5, zen3) == ('recorded on avx512 (family 26 model 2, cpu), '
                                           'measured on avx2 (family 25 model 1, cpu)')
  assert machine.same_kind(zen5, dict(zen5, devices=['H100'])) is not None
  assert machine.same_kind({'cpu': 'old file'}, zen3) is None   # recorded before `isa` was
  # A sweep's points on one kind of machine make that kind; on two, a kind comparable
  # with nothing (not even another mixed sweep).
  assert machine.common([zen5, dict(zen5, cpu_id='family 26 model 9'), None]) == zen5
  mixed = machine.common([zen5, zen3])
  assert mixed['isa'] == 'mixed' and mixed['machines'] == [zen5, zen3]
  assert machine.same_kind(mixed, zen5) and machine.same_kind(mixed, mixed)
  # The folder of a kind under results/<job>/.
  assert [machine.kind(m) for m in (zen5, zen3, mixed, {'cpu': 'old file'})] == [
      'avx512', 'avx2', 'mixed', 'unrecorded']
  assert machine.kind(dict(zen5, devices=['NVIDIA H100 80GB HBM3'] * 8)) == (
      'avx512-nvidia_h100_80gb_hbm3')
  assert machine.common([None]) is None
