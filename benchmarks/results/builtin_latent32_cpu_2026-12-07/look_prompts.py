"""The prompts snapshot.py and version4_grid.py sample: the five held-out eye pairs and three seen prompts."""

from avatarstudio_ns.builtin.head_images import describe

LOOK_PROMPTS = [
    describe(values)
    for values in (
        {"eyes": "brown", "hair": "grey"},
        {"eyes": "blue", "hair": "brown"},
        {"eyes": "green", "hair": "black"},
        {"eyes": "hazel", "hair": "blonde"},
        {"eyes": "grey", "hair": "red"},
        {"hair": "blue"},
        {"lips": "red", "skin": "dark"},
        {"hair": "black", "skin": "pale", "eyes": "blue"},
    )
]
