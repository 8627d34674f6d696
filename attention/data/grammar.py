"""The `lang` task: a synthetic language pair generated from one grammar.

The source is English-like: subject-verb-object clauses, adjectives before nouns,
prepositions, clauses joined by conjunctions.

  the big cat on a red mat sees some old dogs quickly and a bird sings .

The target language has its own words and differs where word-by-word translation
breaks:
  * word order: the verb ends its clause (SOV); adjectives and the determiner follow
    the noun; prepositional phrases become postpositional and precede their noun;
  * agreement: every noun has a grammatical gender (a property of the target word,
    invisible in the source word) and a number; adjectives and determiners agree with
    their noun, and the verb agrees in gender and number with its subject, which sits
    at the other end of the clause, across the object and its modifiers.

  the big cat sees some old dogs .  ->  mavo zuren le bidai kelinu nuse fexali .

Every target word translates exactly one source word (agreement is a suffix of the word
it agrees with, and every determiner, preposition and conjunction has its target word),
so the grammar knows the true word alignment: `aligned_pair` returns, for each target
word, the index of its source word. The alignment is a permutation of the words.

Everything is determined by the seed: the lexicon (target words are generated
pronounceable strings) and every sentence.
"""

from __future__ import annotations

import dataclasses

import numpy as np

GENDERS = ('a', 'b', 'c')  # three genders, distinguished only in the target language

# Source lemmas. Nouns take -s in the plural; verbs take -s with a singular subject.
NOUNS = ('cat', 'dog', 'bird', 'horse', 'fish', 'child', 'farmer', 'teacher', 'doctor',
         'king', 'queen', 'river', 'tree', 'house', 'garden', 'city', 'boat', 'car',
         'book', 'letter', 'table', 'chair', 'window', 'door', 'mountain', 'forest',
         'apple', 'bread', 'song', 'friend', 'student', 'artist', 'sailor', 'soldier',
         'painter', 'lamp', 'cup', 'flower', 'stone', 'road')
ADJECTIVES = ('big', 'small', 'old', 'young', 'red', 'green', 'blue', 'happy', 'sad',
              'quiet', 'loud', 'bright', 'dark', 'tall', 'short', 'strong', 'clever',
              'brave', 'gentle', 'strange')
VERBS = ('see', 'like', 'find', 'follow', 'help', 'carry', 'paint', 'visit', 'watch',
         'call', 'hold', 'push', 'pull', 'know', 'remember', 'draw', 'clean', 'build',
         'read', 'want')
ADVERBS = ('quickly', 'slowly', 'often', 'rarely', 'quietly', 'loudly', 'again', 'today')
PREPOSITIONS = ('on', 'under', 'near', 'behind', 'with', 'without', 'beside', 'above')
DETERMINERS = {'singular': ('the', 'a', 'every', 'this'),
               'plural': ('the', 'some', 'many', 'these')}
CONJUNCTIONS = ('and', 'but', 'while', 'because')

_SYLLABLE_ONSETS = tuple('bdfgklmnprstvxz')
_SYLLABLE_VOWELS = tuple('aeiou')


@dataclasses.dataclass(frozen=True)
class Lexicon:
  """Target-language words for every source lemma, and each noun's gender."""
  noun: dict
  gender: dict
  adjective: dict
  verb: dict
  adverb: dict
  postposition: dict
  determiner: dict
  conjunction: dict

  @classmethod
  def generate(cls, seed: int) -> Lexicon:
    rng = np.random.default_rng([seed, 0x1E7])
    used = set()

    def word(syllables):
      while True:
        w = ''.join(rng.choice(_SYLLABLE_ONSETS) + rng.choice(_SYLLABLE_VOWELS)
                    for _ in range(syllables))
        if w not in used:
          used.add(w)
          return w

    return cls(
        noun={n: word(2) for n in NOUNS},
        gender={n: GENDERS[i % len(GENDERS)] for i, n in
                enumerate(rng.permutation(NOUNS))},
        adjective={a: word(2) for a in ADJECTIVES},
        verb={v: word(3) for v in VERBS},
        adverb={a: word(3) for a in ADVERBS},
        postposition={p: word(1) for p in PREPOSITIONS},
        # One determiner stem per source determiner; agreement adds a suffix.
        determiner={d: word(1) for d in sorted(set(DETERMINERS['singular'])
                                              | set(DETERMINERS['plural']))},
        conjunction={c: word(2) for c in CONJUNCTIONS},
    )


# Target suffixes: noun plural; adjective/determiner/verb agreement by (gender, number).
NOUN_PLURAL = 'li'
AGREEMENT = {('a', 'singular'): 'n', ('a', 'plural'): 'nu', ('b', 'singular'): 'r',
             ('b', 'plural'): 'ri', ('c', 'singular'): 's', ('c', 'plural'): 'se'}
VERB_AGREEMENT = {('a', 'singular'): 'ta', ('a', 'plural'): 'tan', ('b', 'singular'): 'ko',
                  ('b', 'plural'): 'kon', ('c', 'singular'): 'mi', ('c', 'plural'): 'mis'}


@dataclasses.dataclass
class NounPhrase:
  noun: str
  number: str
  determiner: str
  adjectives: list
  pp: tuple | None = None     # (preposition, NounPhrase)

  def source(self) -> list:
    noun = self.noun + ('s' if self.number == 'plural' else '')
    words = [self.determiner, *self.adjectives, noun]
    if self.pp is not None:
      words += [self.pp[0], *self.pp[1].source()]
    return words

  def target(self, lex: Lexicon) -> list:
    return [word for word, _ in self.aligned_target(lex)]

  def aligned_target(self, lex: Lexicon) -> list[tuple[str, int]]:
    """(target word, index in source() of the word it translates), in target order."""
    agree = AGREEMENT[(lex.gender[self.noun], self.number)]
    noun_at = 1 + len(self.adjectives)   # source: determiner, adjectives, noun, pp
    words = []
    if self.pp is not None:
      words += [(w, noun_at + 2 + i) for w, i in self.pp[1].aligned_target(lex)]
      words.append((lex.postposition[self.pp[0]], noun_at + 1))
    words.append((lex.noun[self.noun] + (NOUN_PLURAL if self.number == 'plural' else ''),
                  noun_at))
    words += [(lex.adjective[a] + agree, 1 + i) for i, a in enumerate(self.adjectives)]
    words.append((lex.determiner[self.determiner] + agree, 0))
    return words

  def __len__(self):
    return len(self.source())


@dataclasses.dataclass
class Clause:
  subject: NounPhrase
  verb: str
  obj: NounPhrase
  adverb: str | None

  def source(self) -> list:
    verb = self.verb + ('s' if self.subject.number == 'singular' else '')
    return [*self.subject.source(), verb, *self.obj.source(),
            *([self.adverb] if self.adverb else [])]

  def target(self, lex: Lexicon) -> list:
    return [word for word, _ in self.aligned_target(lex)]

  def aligned_target(self, lex: Lexicon) -> list[tuple[str, int]]:
    """(target word, index in source() of the word it translates), in target order."""
    agree = VERB_AGREEMENT[(lex.gender[self.subject.noun], self.subject.number)]
    verb_at = len(self.subject)           # source: subject, verb, object, adverb
    obj_at = verb_at + 1
    return [*self.subject.aligned_target(lex),
            *[(w, obj_at + i) for w, i in self.obj.aligned_target(lex)],
            *([(lex.adverb[self.adverb], obj_at + len(self.obj))] if self.adverb else []),
            (lex.verb[self.verb] + agree, verb_at)]


class Grammar:
  """Samples sentence pairs; `max_pp_depth` and `max_clauses` bound the length."""

  def __init__(self, lexicon: Lexicon, *, max_clauses: int = 2, max_adjectives: int = 2,
               max_pp_depth: int = 1):
    self.lex = lexicon
    self.max_clauses = max_clauses
    self.max_adjectives = max_adjectives
    self.max_pp_depth = max_pp_depth

  def noun_phrase(self, rng, depth: int = 0) -> NounPhrase:
    number = 'plural' if rng.random() < 0.4 else 'singular'
    n_adj = int(rng.integers(0, self.max_adjectives + 1))
    adjectives = list(rng.choice(ADJECTIVES, size=n_adj, replace=False)) if n_adj else []
    pp = None
    if depth < self.max_pp_depth and rng.random() < 0.3:
      pp = (str(rng.choice(PREPOSITIONS)), self.noun_phrase(rng, depth + 1))
    return NounPhrase(str(rng.choice(NOUNS)), number, str(rng.choice(DETERMINERS[number])),
                      [str(a) for a in adjectives], pp)

  def clause(self, rng) -> Clause:
    adverb = str(rng.choice(ADVERBS)) if rng.random() < 0.3 else None
    return Clause(self.noun_phrase(rng), str(rng.choice(VERBS)), self.noun_phrase(rng), adverb)

  def pair(self, rng) -> tuple[str, str]:
    source, target, _ = self.aligned_pair(rng)
    return source, target

  def aligned_pair(self, rng) -> tuple[str, str, list[int]]:
    """(source, target, alignment): alignment[j] is the index of the source word that
    target word j translates (words split on spaces, the final '.' included)."""
    clauses = [self.clause(rng) for _ in range(int(rng.integers(1, self.max_clauses + 1)))]
    conjunctions = [str(rng.choice(CONJUNCTIONS)) for _ in clauses[1:]]
    return self.sentence(clauses, conjunctions)

  def sentence(self, clauses: list[Clause], conjunctions: list[str]):
    """(source, target, alignment) of clauses joined by conjunctions (one fewer)."""
    src, tgt = [], []
    for conj, clause in zip([None, *conjunctions], clauses):
      if conj is not None:
        tgt.append((self.lex.conjunction[conj], len(src)))
        src.append(conj)
      tgt += [(w, len(src) + i) for w, i in clause.aligned_target(self.lex)]
      src += clause.source()
    tgt.append(('.', len(src)))
    src.append('.')
    return ' '.join(src), ' '.join(w for w, _ in tgt), [i for _, i in tgt]


def word_by_word(source: str, lexicon: Lexicon) -> str:
  """The dictionary baseline: each source word replaced by its target lemma, in source
  order, with no agreement (plural -s mapped to the noun plural). What a model that
  ignores context and order would produce."""
  table = {}
  for src_map in (lexicon.adjective, lexicon.adverb, lexicon.postposition,
                  lexicon.determiner, lexicon.conjunction):
    table.update(src_map)
  for noun, tgt in lexicon.noun.items():
    table[noun], table[noun + 's'] = tgt, tgt + NOUN_PLURAL
  for verb, tgt in lexicon.verb.items():
    table[verb] = table[verb + 's'] = tgt
  table['.'] = '.'
  return ' '.join(table.get(w, w) for w in source.split())
