// What a removal and a ban do, in the words the host console confirms them with: exactly what the
// server enforces (spaces/rules.py, spaces/control.py), no more.
//
// Removing takes someone off the stage and out of the hand queue and bars nothing. Banning also
// refuses them reacting, raising a hand, clips and the stage from then on; their page says so at
// once (it reads the Space's snapshot, which lists the last minute's bans and removals). Neither
// stops the stream: a public Space's audio is an ordinary cacheable web broadcast, served by caches
// and CDNs to anyone with the link without asking who they are, and that is what lets it reach any
// audience size. A private Space's stream is served the same way to anyone who has its listener
// link, and a ban does not change that link.

/** What happens to their place in the Space: the stage, or a raised hand, or nothing. */
function lead(onStage, handRaised) {
  if (onStage) return 'They leave the stage now.';
  if (handRaised) return 'Their raised hand is taken down.';
  return '';
}

/** "Remove …?" for a stage member (`onStage`) or someone with a raised hand (`handRaised`). */
export function removeQuestion(name, { onStage = false, handRaised = false } = {}) {
  return [
    `Remove ${name}?`,
    lead(onStage, handRaised),
    'They are not banned: they can keep listening and raise a hand again.',
  ]
    .filter(Boolean)
    .join(' ');
}

/** "Ban …?", saying who can still hear the Space and why (see the top of this file). */
export function banQuestion(name, { onStage = false, handRaised = false, visibility = 'public' } = {}) {
  const stream =
    visibility === 'private'
      ? `They can still hear it if they have this private Space's listener link: the stream is served to whoever has that link, without asking who they are, and a ban does not change the link. A new listener link (Share, host console) ends the old one for everyone.`
      : `The stream stays public and ${name} can still hear it: it is an open web broadcast that caches and CDNs serve to anyone with the link, without asking who they are, which is what lets it reach any audience.`;
  return [
    `Ban ${name}?`,
    lead(onStage, handRaised),
    'They can no longer react, raise a hand, make clips or come on stage in this Space, and their page tells them so at once.',
    stream,
  ]
    .filter(Boolean)
    .join(' ');
}
