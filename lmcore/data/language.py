"""Language identification: each document's language and the identifier's confidence in it.

The default identifier is py3langid (langid.py's model of 97 languages, shipped in the package, ISO 639-1
labels: en, fr, de, ...), so that nothing needs the internet; `model_file:` reads a fastText model the
user has (lid.176.bin: `en`, as FineWeb uses it; GlotLID: `eng_Latn`) with the fastText binding.
A document is identified by its first PREFIX_CHARS characters: the label of a long document does not
change past them, and the cost then stays per document, not per byte.
"""

PREFIX_CHARS = 20_000
ENGLISH_RULES = ("gopher_quality", "gopher_repetition", "c4")  # written for English (stop words, policy lines)


class Identifier:
    """`identify(text)` -> (language, score in [0, 1])."""

    def __init__(self, model_file=None):
        self.model_file = model_file
        if model_file:
            import fasttext

            self.model = fasttext.load_model(model_file)
        else:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            self.model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def __call__(self, text):
        text = text[:PREFIX_CHARS]
        if not self.model_file:
            language, score = self.model.classify(text)
            return language, float(score)
        # fastText reads one line; the list form, as the single-line one fails on numpy 2 (fasttext 0.9.3)
        (labels,), (scores,) = self.model.predict([text.replace("\n", " ")], k=1)
        return (labels[0].removeprefix("__label__"), min(float(scores[0]), 1.0)) if labels else ("unknown", 0.0)
