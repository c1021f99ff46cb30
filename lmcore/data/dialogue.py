"""Conversations from the text of a play: each speech, and the speech that answers it.

A speech opens at a line the speaker pattern matches (its first group the speaker, e.g. Gutenberg's
`HAMLET.` on a line of its own; the rest of the line, if any, begins the speech) and runs to the next
such line. A scene heading ends a scene: no speech answers one across it, and the text before the
first heading (title, list of characters) is not read. Stage directions in brackets are left out.
Within a scene, the speeches s1, s2, s3, ... give the conversations (s1, s2), (s2, s3), ... whose
speakers differ: the user's message is a speech, the assistant's the answer, and the system message
names both ("You are HORATIO. MARCELLUS speaks to you."). A speech is held until the next one starts:
memory is one speech, whatever the size of the play.
"""

import itertools
import re

from lmcore.io import stable_hash

SCENE = r"^(ACT|Act|SCENE|Scene)\b"  # a scene heading, when the source names none
DIRECTION = re.compile(r"\[[^\]]*\]")


def speech_text(lines):
    """A speech's lines without stage directions, blank lines and spaces at the ends."""
    text = DIRECTION.sub("", "\n".join(lines))
    return "\n".join(line.strip() for line in text.split("\n") if line.strip())


class Dialogue:
    """Feed a play's lines in order; each `feed` yields the conversations the line completes."""

    def __init__(self, speaker, scene=SCENE):
        self.speaker, self.scene = re.compile(speaker), re.compile(scene)
        self.in_play = False
        self.speech = None  # (speaker, lines) of the speech being read
        self.previous = None  # (speaker, text) of the scene's last speech
        self.scenes = 0  # scene headings read: the scene of a conversation `feed` yields

    def feed(self, line):
        if self.scene.match(line):
            yield from self.finish()
            self.previous, self.in_play = None, True
            self.scenes += 1
            return
        if not self.in_play:
            return
        opens = self.speaker.match(line)
        if opens:
            yield from self.finish()
            self.speech = (opens.group(1), [line[opens.end() :]])
        elif self.speech:
            self.speech[1].append(line)

    def finish(self):
        """The conversation the speech being read completes, if it answers another speaker."""
        if self.speech is None:
            return
        (who, lines), self.speech = self.speech, None
        text = speech_text(lines)
        if not text:  # a speaker's name over a stage direction only
            return
        if self.previous and self.previous[0] != who:
            to, said = self.previous
            yield [
                {"role": "system", "content": f"You are {who}. {to} speaks to you."},
                {"role": "user", "content": said},
                {"role": "assistant", "content": text},
            ]
        self.previous = (who, text)


def with_rejected(conversations):
    """Preference pairs of a play's conversations ((scene, messages) in order): each chosen answer the play's own,
    the rejected one a reply drawn (by a hash of the exchange) from the scene before; the first scene's from the
    play's last (a play of one scene gives none). Memory: three scenes (the first, the one before, this one)."""

    def paired(scene, replies):
        for messages in scene:
            yield messages, replies[stable_hash(messages[1]["content"] + messages[2]["content"]) % len(replies)]

    first, previous, scenes = None, None, 0
    for _, group in itertools.groupby(conversations, key=lambda c: c[0]):
        scene = [messages for _, messages in group]
        if previous is None:
            first = scene
        else:
            yield from paired(scene, previous)
        previous, scenes = [messages[2]["content"] for messages in scene], scenes + 1
    if scenes > 1:
        yield from paired(first, previous)
