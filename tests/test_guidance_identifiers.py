"""Keyframe identifiers and prompts."""

from __future__ import annotations

from avatarstudio_ns.guidance.personalization.identifiers import class_prompt, identifier_prompt, make_identifiers


def test_identifiers_unique_deterministic_and_shared_ablation():
    ids = make_identifiers(30, seed=7)
    assert len(set(ids)) == 30 and all(len(i) == 10 and i.isalpha() and i.islower() for i in ids)
    assert make_identifiers(30, seed=7) == ids and make_identifiers(30, seed=8) != ids
    shared = make_identifiers(5, seed=7, shared=True)
    assert len(set(shared)) == 1
    assert identifier_prompt(ids[0], "woman") == f"photo of a {ids[0]} woman"
    assert class_prompt("man") == "photo of a man"
