"""Space names: validation, and generated `adjective_surname` names such as `dynamic_stark`."""

from __future__ import annotations

import secrets

# A name is used as an SSH host alias (`NAME.pair`), in URLs and on the command line, so it is
# kept to characters that need no quoting anywhere: the wire contract's rule (pair.api.models),
# which the CLI also checks the broker's answers against (pair.api.grammar).
from pair.api.grammar import NAME_RE, NAME_RULE

__all__ = ["NAME_RE", "NAME_RULE", "generate", "is_valid"]

ADJECTIVES = """
admiring adoring agile amazing awesome blissful bold brave busy calm charming clever cool
compassionate competent confident cranky dazzling determined distracted dreamy dynamic eager
ecstatic elastic elegant eloquent epic exciting fervent festive flamboyant focused friendly
frosty funny gallant gifted goofy gracious great happy hardcore heuristic hopeful hungry
infallible inspiring intelligent interesting jolly jovial keen kind laughing loving lucid
magical modest musing mystifying naughty nervous nice nifty nostalgic objective optimistic
peaceful pedantic pensive practical priceless quirky quizzical recursing relaxed reverent
romantic sad serene sharp silly sleepy stoic strange stupefied suspicious sweet tender thirsty
trusting unruffled upbeat vibrant vigilant vigorous wizardly wonderful xenodochial youthful
zealous zen
""".split()

SURNAMES = """
agnesi albattani allen almeida antonelli archimedes ardinghelli aryabhata austin babbage banach
banzai bardeen bartik bassi beaver bell benz bhabha bhaskara black blackburn blackwell bohr
booth borg bose bouman boyd brahmagupta brattain brown buck burnell cannon carson cartwright
carver cerf chandrasekhar chaplygin chatelet chatterjee chaum chebyshev clarke cohen colden cori
cray curie darwin davinci dewdney dhawan diffie dijkstra dirac driscoll dubinsky easley edison
einstein elbakyan elgamal elion ellis engelbart euclid euler faraday feistel fermat fermi
feynman franklin gagarin galileo galois ganguly gates gauss germain goldberg goldstine
goldwasser golick goodall gould greider grothendieck haibt hamilton haslett hawking heisenberg
hellman hermann herschel hertz heyrovsky hodgkin hofstadter hoover hopper hugle hypatia ishizaka
jackson jang jemison jennings jepsen johnson joliot jones kalam kapitsa kare keldysh keller
kepler khayyam khorana kilby kirch knuth kowalevski lalande lamarr lamport leakey leavitt
lederberg lehmann lewin lichterman liskov lovelace lumiere mahavira margulis matsumoto maxwell
mayer mccarthy mcclintock mclaren mclean mcnulty meitner mendel mendeleev meninsky merkle
mestorf mirzakhani montalcini moore morse moser murdock napier nash neumann newton nightingale
nobel noether northcutt noyce panini pare pascal pasteur payne perlman pike poincare poitras
proskuriakova ptolemy raman ramanujan rhodes ride ritchie robinson roentgen rosalind rubin saha
sammet sanderson satoshi shamir shannon shaw shirley shockley shtern sinoussi snyder solomon
spence stark stonebraker sutherland swanson swartz swirles taussig tesla tharp thompson torvalds
tu turing varahamihira vaughan villani visvesvaraya volhard wescoff wilbur wiles williams
williamson wilson wing wozniak wright wu yalow yonath zhukovsky
""".split()


def is_valid(name: str) -> bool:
    return NAME_RE.match(name) is not None


def generate() -> str:
    return f"{secrets.choice(ADJECTIVES)}_{secrets.choice(SURNAMES)}"
