"""Likely duplicates among a township's topics (相似议题), for submitters and the office.

The rule is ours, not the reports': two topics are alike by the words of their titles.
Chinese is written without spaces, so the words come from a segmenter (rjieba, the Python
binding of jieba-rs), in its search mode, which also yields the parts of a compound word
(工作细则 → 工作, 细则) so that a compound matches its parts. Particles, prepositions,
conjunctions, pronouns and punctuation are left out. The score is the Jaccard index of the two
sets of words (shared words / all words); topics scoring at least ``THRESHOLD`` are listed,
best first. "流动党员管理难" and "外出流动党员失联" share 流动 and 党员 (1/3); "党员发展工作细则"
shares only 党员 with the first (1/8) and is not listed.

The words are kept in the read model (``topic_terms``, GIN-indexed), so the candidates are
found by PostgreSQL's array overlap and scored there.
"""

from __future__ import annotations

import rjieba

THRESHOLD = 0.25
LIMIT = 5
_FUNCTION_WORD_TAGS = ("u", "p", "c", "r", "x", "y", "e", "o")
"""jieba's part-of-speech tags of words that say nothing about a topic (的, 关于, 和, 怎么…)."""


def title_terms(title: str) -> list[str]:
    """The words of a title that can make two topics alike, in a stable order."""
    function_words = {
        word for word, tag in rjieba.tag(title) if tag.startswith(_FUNCTION_WORD_TAGS)
    }
    words = (w.strip() for w in rjieba.cut_for_search(title))
    return sorted({w for w in words if w and w not in function_words})


SIMILAR_SQL = """
SELECT t.topic_id, t.forum_id, t.title, t.state, round(s.score::numeric, 2)::float8 AS score
FROM (
    SELECT topic_id,
        (SELECT count(*) FROM unnest(terms) AS w WHERE w = ANY($2::text[]))::float8
        / (SELECT count(DISTINCT w) FROM unnest(terms || $2::text[]) AS w) AS score
    FROM {terms}
    WHERE township_id = $1 AND terms && $2::text[] AND topic_id <> ALL($3::text[])
) s
JOIN {topics} t ON t.topic_id = s.topic_id AND t.state NOT IN ('withdrawn', 'merged')
WHERE s.score >= $4
ORDER BY s.score DESC, t.topic_id
LIMIT $5
"""
