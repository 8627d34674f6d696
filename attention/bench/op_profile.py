"""Where a compiled JAX program spends its time, per XLA operation, from a profiler trace.

  compiled = jax.jit(fn).lower(*args).compile()
  report = op_profile.profile(compiled, args, repeats=3)
  report['categories']   # {'matmul': {'ms', 'share', 'gflop', 'gflops'}, 'exp': .., ...}
  report['ops']          # one entry per HLO op, slowest first, with GFLOP/s for products

XLA's runtime marks every operation it executes (on CPU, each thunk) in the trace with
its HLO name. An operation's self time is its traced time minus that of operations
running inside it on the same thread (a while loop's body), so the self times add up to
the time spent in operations. Independent operations may run at once on different
threads; then the sum exceeds the wall time ('overlap' > 1).

Categories come from the optimized HLO: 'matmul' (a dot, alone or in a library fusion),
'exp' (element-wise work that includes an exponential), 'reduce', 'elementwise',
'data movement' (copies, transposes, slices, updates, broadcasts), 'control' (loops'
own time) and 'other' (custom calls, sorts, collectives...). FLOPs are counted for HLO
dots only: a product done by a custom call shows as 'other' time with no FLOPs.
"""

from __future__ import annotations

import collections
import math
import re
import time

import jax

_MOVEMENT = {'copy', 'transpose', 'bitcast', 'broadcast', 'slice', 'dynamic-slice',
             'dynamic-update-slice', 'pad', 'concatenate', 'reshape', 'parameter', 'constant',
             'iota', 'tuple', 'get-tuple-element', 'convert'}
_CONTROL = {'while', 'conditional', 'call'}
_ELEMENTWISE = {'add', 'subtract', 'multiply', 'divide', 'maximum', 'minimum', 'select',
                'compare', 'and', 'or', 'not', 'xor', 'negate', 'abs', 'sign', 'floor', 'ceil',
                'round-nearest-even', 'round-nearest-afz', 'clamp', 'log', 'log-plus-one',
                'exponential-minus-one', 'tanh', 'logistic', 'sqrt', 'rsqrt', 'cbrt', 'power',
                'remainder', 'atan2', 'sine', 'cosine', 'tan', 'is-finite', 'erf',
                'shift-left', 'shift-right-logical', 'shift-right-arithmetic', 'popcnt',
                'real', 'imag', 'complex', 'bitcast-convert', 'reduce-precision'}
# '%name = TYPE opcode(' where TYPE is one token or a parenthesized tuple.
_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\(.*?\)|\S+)\s+([a-z][a-z0-9\-]*)\((.*)$')
_HEADER = re.compile(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(')
_DIMS = re.compile(r'\[([\d,]*)\]')


def _parse_hlo(text: str):
  """{computation: {instruction: (shape dims, opcode, rest of line)}}."""
  computations, current = {}, None
  for line in text.splitlines():
    if not line.startswith(' ') and line.rstrip().endswith('{'):
      header = _HEADER.match(line)
      current = computations.setdefault(header.group(1), {}) if header else None
      continue
    match = _INSTRUCTION.match(line) if current is not None else None
    if match:
      name, shape, opcode, rest = match.groups()
      dims = _DIMS.search(shape)
      size = [int(d) for d in dims.group(1).split(',') if d] if dims else []
      current[name] = (size, opcode, rest)
  return computations


def _dot_flops(instructions, rest, out_dims) -> float:
  """2 x output elements x contracted length, from a dot's operand shapes."""
  # The first operand, written '%name' or, in some XLA versions, 'f32[..]{..} %name'.
  lhs = re.match(r'(?:\S+\[[^\]]*\]\S*\s+)?%?([\w.\-]+)', rest).group(1)
  contracting = re.search(r'lhs_contracting_dims=\{([\d,]*)\}', rest)
  if lhs not in instructions or not contracting:
    return 0.0
  lhs_dims = instructions[lhs][0]
  depth = math.prod(lhs_dims[int(d)] for d in contracting.group(1).split(',') if d)
  return 2.0 * math.prod(out_dims) * depth


def classify(text: str) -> dict:
  """{HLO op name: (category, FLOPs of its products per execution)} for a module's text."""
  computations = _parse_hlo(text)

  def describe(instructions, dims, opcode, rest, seen=()):
    """Opcodes and product FLOPs of one instruction; a fusion's are those of the
    computation it calls, followed down through nested fusions."""
    called = re.search(r'calls=%?([\w.\-]+)', rest) if opcode == 'fusion' else None
    if called is None or called.group(1) in seen:
      return {opcode}, _dot_flops(instructions, rest, dims) if opcode == 'dot' else 0.0
    callee = computations.get(called.group(1), {})
    opcodes, flops = set(), 0.0
    for inner in callee.values():
      inner_opcodes, inner_flops = describe(callee, *inner, seen + (called.group(1),))
      opcodes |= inner_opcodes
      flops += inner_flops
    return opcodes, flops

  ops = {}
  for instructions in computations.values():
    for name, instruction in instructions.items():
      opcodes, flops = describe(instructions, *instruction)
      ops[name] = (_category(opcodes), flops)
  return ops


def _category(opcodes: set) -> str:
  if 'dot' in opcodes or 'convolution' in opcodes:
    return 'matmul'
  if opcodes & _CONTROL:
    return 'control'
  if 'exponential' in opcodes:
    return 'exp'
  if 'reduce' in opcodes or 'reduce-window' in opcodes:
    return 'reduce'
  if opcodes <= _MOVEMENT:
    return 'data movement'
  if opcodes <= _MOVEMENT | _ELEMENTWISE:
    return 'elementwise'
  return 'other'   # custom calls (whose products are not counted), sorts, collectives, ...


def available() -> bool:
  """Whether this jax can read its own traces (jax.profiler.ProfileData: jax 0.10 can,
  jax 0.6 cannot)."""
  return getattr(jax.profiler, 'ProfileData', None) is not None


def _self_times(xspace: bytes) -> tuple[collections.Counter, collections.Counter]:
  """Self time (ns) and execution count per HLO op name, over all host threads."""
  self_ns, count = collections.Counter(), collections.Counter()
  data = jax.profiler.ProfileData.from_serialized_xspace(xspace)
  for plane in data.planes:
    for line in plane.lines:
      events = []
      for event in line.events:
        op = dict(event.stats).get('hlo_op')
        if op:
          events.append((event.start_ns, event.duration_ns, op))
      events.sort(key=lambda e: (e[0], -e[1]))
      open_ops = []   # (end_ns, name) of the operations the next event may lie inside
      for start, duration, op in events:
        while open_ops and open_ops[-1][0] <= start:
          open_ops.pop()
        if open_ops:
          self_ns[open_ops[-1][1]] -= duration
        self_ns[op] += duration
        count[op] += 1
        open_ops.append((start + duration, op))
  return self_ns, count


def profile(compiled, args, repeats: int = 3) -> dict:
  """Runs compiled(*args) once untraced, then `repeats` times under the profiler."""
  if not available():
    raise RuntimeError(f'op_profile needs jax.profiler.ProfileData, which jax {jax.__version__} '
                       'does not have (jax 0.10 has it)')
  # pylint: disable-next=import-outside-toplevel
  from jax._src.lib import _profiler   # the session object; jax.profiler only writes files
  jax.block_until_ready(compiled(*args))
  session = _profiler.ProfilerSession(jax.profiler.ProfileOptions())
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(compiled(*args))
  wall = (time.perf_counter() - start) / repeats
  self_ns, count = _self_times(session.stop())
  kinds = classify(compiled.as_text())
  ops = []
  for op, ns in self_ns.most_common():
    category, flops = kinds.get(op, ('other', 0.0))
    ms = ns / repeats / 1e6
    entry = {'op': op, 'category': category, 'ms': ms, 'calls': count[op] // repeats}
    if flops:
      entry['gflop'] = flops * entry['calls'] / 1e9
      entry['gflops'] = entry['gflop'] / (ms / 1e3) if ms > 0 else None
    ops.append(entry)
  traced = sum(o['ms'] for o in ops)
  categories = {}
  for o in ops:
    totals = categories.setdefault(o['category'], {'ms': 0.0, 'gflop': 0.0})
    totals['ms'] += o['ms']
    totals['gflop'] += o.get('gflop', 0.0)
  for totals in categories.values():
    totals['share'] = totals['ms'] / traced if traced else 0.0
    totals['gflops'] = (totals['gflop'] / (totals['ms'] / 1e3)
                        if totals['gflop'] and totals['ms'] > 0 else None)
  return {
      'wall_ms': wall * 1e3,
      'traced_ms': traced,
      'overlap': traced / (wall * 1e3),
      'categories': dict(sorted(categories.items(), key=lambda kv: -kv[1]['ms'])),
      'ops': ops,
  }
