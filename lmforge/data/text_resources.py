"""Small built-in word lists: English stop words and a synonym lexicon for augmentation."""

STOPWORDS_EN = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split())

# Gopher's "at least two of these" stop-word rule.
GOPHER_STOPWORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])

SYNONYMS_EN: dict[str, list[str]] = {
    "good": ["fine", "great", "nice"], "bad": ["poor", "awful", "terrible"],
    "big": ["large", "huge"], "small": ["little", "tiny"], "fast": ["quick", "rapid"],
    "slow": ["sluggish", "unhurried"], "happy": ["glad", "pleased"], "sad": ["unhappy", "sorrowful"],
    "movie": ["film", "picture"], "film": ["movie", "picture"], "begin": ["start", "commence"],
    "start": ["begin", "commence"], "end": ["finish", "close"], "make": ["create", "build"],
    "use": ["employ", "apply"], "show": ["display", "present"], "get": ["obtain", "fetch"],
    "return": ["give back", "yield"], "list": ["sequence", "series"], "value": ["quantity", "amount"],
    "error": ["mistake", "fault"], "file": ["document", "record"], "new": ["fresh", "novel"],
    "old": ["aged", "former"], "important": ["significant", "crucial"], "easy": ["simple", "effortless"],
    "hard": ["difficult", "tough"], "funny": ["amusing", "humorous"], "boring": ["dull", "tedious"],
    "beautiful": ["lovely", "pretty"], "story": ["tale", "narrative"], "actor": ["performer", "player"],
}
