// The townhall JSON API as the pages use it, and the few helpers every page shares.
//
// Every API error has one shape, {"error": {"code", "message"}}; `api()` turns it (and a network
// failure) into an ApiError whose message is written for the person in front of the page.

export class ApiError extends Error {
  constructor(status, code, message, retryAfterSeconds = 0) {
    super(message);
    this.name = 'ApiError';
    this.status = status; // 0 when the server could not be reached at all
    this.code = code;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

function retryAfter(response) {
  const raw = response.headers.get('Retry-After');
  const seconds = raw === null ? NaN : Number(raw);
  return Number.isFinite(seconds) && seconds > 0 ? seconds : 0;
}

export async function api(path, { method = 'GET', body, token, keepalive = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      keepalive,
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    // not JSON (a proxy's error page, say): fall through to the generic message
  }
  if (!response.ok) {
    const error = data && typeof data.error === 'object' ? data.error : {};
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || `The server answered ${response.status} ${response.statusText}.`.trim(),
      retryAfter(response),
    );
  }
  return data;
}

const STATE_LABELS = {
  scheduled: 'Scheduled',
  green_room: 'Green room',
  live: 'Live',
  ended: 'Ended',
  cancelled: 'Cancelled',
};

/** A Space's lifecycle state as people say it. */
export function stateLabel(state) {
  return STATE_LABELS[state] || String(state).replace(/_/g, ' ');
}

/** The Space id in /s/{id} or /s/{id}/stage, or null. */
export function spaceIdFromPath(pathname = location.pathname) {
  const match = /^\/s\/([a-z0-9]{10})(?:\/|$)/.exec(pathname);
  return match ? match[1] : null;
}

/** Links are built from the address this browser used, which is the one that reaches the server. */
export function listenerLink(spaceId) {
  return `${location.origin}/s/${spaceId}`;
}

export function stageLink(spaceId, token) {
  return `${location.origin}/s/${spaceId}/stage#token=${encodeURIComponent(token)}`;
}

/**
 * The claims of a JWT, decoded without verifying it: for display only (role, expiry).
 * The server checks the signature on every call.
 */
export function jwtClaims(token) {
  try {
    const part = token.split('.')[1];
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const padded = base64.padEnd(Math.ceil(base64.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(padded), (ch) => ch.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

export function byId(id) {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`page is missing #${id}`);
  return element;
}

/** Shows a message in an element (role="alert" or "status"), or hides it when message is empty. */
export function say(element, message) {
  element.textContent = message || '';
  element.hidden = !message;
}

/** Copies a read-only field's text; where the clipboard is not available, selects it for Ctrl+C. */
export async function copyField(input, feedback) {
  input.focus();
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    feedback.textContent = 'Copied to the clipboard.';
  } catch {
    feedback.textContent = 'Selected: press Ctrl+C (⌘C on a Mac) to copy.';
  }
}
