// "Notify this browser": Web Push for reminders. Registers the push worker (/push-worker.js),
// asks for permission to notify (only when the person presses a button: browsers require it),
// subscribes with the server's VAPID key and hands the subscription to the server, which then
// sends this browser the reminders the person asks for by push (api/push_routes.py).

import { api } from './api.js';

const WORKER = '/push-worker.js';
// A browser whose push service cannot be reached may take long to say so; the person waits on
// the button meanwhile.
const SUBSCRIBE_TIMEOUT_MS = 15000;

/** Whether this browser can receive pushes at all (and the page is a secure context). */
export function pushSupported() {
  return window.isSecureContext && 'serviceWorker' in navigator && 'PushManager' in window
    && 'Notification' in window;
}

/** The push worker's registration, registering it if needed. */
export async function pushWorker() {
  const registration = await navigator.serviceWorker.register(WORKER, { scope: '/' });
  await navigator.serviceWorker.ready;
  return registration;
}

function keyBytes(base64url) {
  const padded = base64url.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (base64url.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

/**
 * Subscribe this browser and tell the server. Resolves to nothing; rejects with an Error whose
 * message is a sentence for the person (permission refused, no push service reachable).
 */
export async function subscribeThisBrowser() {
  const permission = await Notification.requestPermission();
  if (permission !== 'granted') {
    throw new Error('Notifications are blocked for this site: allow them in the browser to be notified here.');
  }
  const registration = await pushWorker();
  const { public_key: key } = await api('/api/push/key', { cache: 'default' });
  let subscription;
  try {
    subscription = await registration.pushManager.getSubscription() || await Promise.race([
      registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) }),
      new Promise((_, reject) => { setTimeout(() => reject(new Error('timeout')), SUBSCRIBE_TIMEOUT_MS); }),
    ]);
  } catch {
    throw new Error('This browser could not reach its push service: you will be reminded by the other ways you chose.');
  }
  await api('/api/push/subscriptions', { method: 'POST', body: subscription.toJSON() });
}
