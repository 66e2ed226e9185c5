"""Held-out sentences for the demo model's scope gate (issue 24), read only by `benchmarks/demo_scope.py`.

Written apart from the training captions, test/data/demo_scope_phrases.yaml and the gate's negatives
(training/demo_scope_negatives.yaml), before the negatives' last revision, and never used to choose
the threshold or the negatives: the rates measured on them are the gate's honest figures. ``IN_SCOPE``
asks for the 20 demo skills in new words; ``NEAR_SCOPE`` uses a skill's verb with another direction,
object or posture; ``FAR`` asks for motions (or things) far from every skill. A set measured once
and then used to revise the gate joins the phrases file (its ``*_more`` and ``near_scope`` entries)
and a new one is written here: this is the fourth.
"""

IN_SCOPE: dict[str, list[str]] = {
    "walk": ["take a walk", "the robot walks slowly forward"],
    "jog": ["jog a bit", "jog along at a steady pace"],
    "run": ["run forward", "the athlete sprints forward"],
    "stealthy_walk": ["sneak around", "he tiptoes ahead quietly"],
    "zombie_walk": ["act like a zombie and walk", "the robot staggers like a zombie"],
    "crawl": ["crawl slowly", "crawl ahead on all fours"],
    "dance_a": ["dance for me", "the robot dances merrily"],
    "dance_b": ["dance without moving", "he moves to the music in place"],
    "dance_spin": ["do a pirouette", "she spins gracefully like a ballerina"],
    "spin": ["spin on the spot", "turn around twice on the spot"],
    "cartwheel": ["cartwheel", "he cartwheels to the left"],
    "roll": ["roll forward quickly", "tumble forward on the mat"],
    "jump": ["jump now", "he jumps far ahead"],
    "backflip": ["backflip", "the robot does a back flip"],
    "sideflip": ["side flip", "she performs a sideways flip to the left"],
    "spinkick": ["spin kick", "he spins and kicks in the air"],
    "kick": ["give a kick", "kick with the right foot"],
    "punch": ["throw a punch", "the robot throws a right punch"],
    "getup_facedown": ["get up from your stomach", "he rises from lying prone"],
    "getup_faceup": ["get up from your back", "she rises from lying on her back"],
}

NEAR_SCOPE: list[str] = [
    "walk backwards slowly to the wall",
    "go up the stairs",
    "jog backwards to the start",
    "run around the track in a circle",
    "crawl backwards slowly",
    "hop on the right foot",
    "jump backward twice",
    "jump onto the chair",
    "spin the bottle",
    "roll the barrel",
    "flip the coin in the air",
    "turn the wheel",
    "sit",
    "lie flat on the floor",
    "kneel on the floor",
    "do a squat",
    "sit on the floor cross legged",
    "stand up from the bed",
    "get off the chair",
    "lean against the wall",
    "skip",
    "walk on your knees",
    "do a push up",
    "stand on your toes",
    "do the splits",
]

FAR: list[str] = [
    "wave",
    "point at the door",
    "clap your hands",
    "shake your head",
    "open the door",
    "grab the cup",
    "throw a ball",
    "type on the keyboard",
    "swim in the lake",
    "fly",
    "sleep",
    "sing",
    "drive",
    "eat lunch",
    "hello",
]
