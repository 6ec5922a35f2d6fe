// The service worker of Web Push reminders, served from the site root (/push-worker.js) so that
// its scope is the whole site. The server's push (reminders/webpush.py: PushMessage) carries
// {title, body, url, tag}: the worker shows it as a notification, and a click opens the Space
// (or focuses a tab that already shows it). It caches nothing and handles no fetch: the pages
// work exactly as they do without it.

const ICON = '/static/icons/icon-192.png';

/** The page to open, always on this site: a push names the Space's page by its public URL, and
 * a server behind another name (or a forged URL) must not send a click elsewhere. */
function sameSite(url) {
  try {
    const given = new URL(url, self.location.origin);
    return new URL(`${given.pathname}${given.search}`, self.location.origin).href;
  } catch {
    return new URL('/', self.location.origin).href;
  }
}

function read(event) {
  if (!event.data) return {};
  try {
    return event.data.json();
  } catch {
    return { body: event.data.text() };
  }
}

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  const data = read(event);
  const url = sameSite(data.url || '/');
  event.waitUntil(
    self.registration.showNotification(String(data.title || 'townhall'), {
      body: String(data.body || ''),
      tag: String(data.tag || 'townhall'),
      renotify: true, // a newer notice about the same Space replaces the older one, and says so
      icon: ICON,
      data: { url },
    }),
  );
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = sameSite((event.notification.data && event.notification.data.url) || '/');
  event.waitUntil((async () => {
    const open = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const tab = open.find((client) => client.url === url && 'focus' in client);
    if (tab) return tab.focus();
    return self.clients.openWindow(url);
  })());
});

// A push service may replace a subscription (Firefox does when one expires): hand the new one to
// the server, for the same person (the session cookie goes with a same-origin fetch), and let the
// old one go. The server would otherwise learn of it only when the old endpoint answers 410.
self.addEventListener('pushsubscriptionchange', (event) => {
  event.waitUntil((async () => {
    const old = event.oldSubscription;
    const fresh = event.newSubscription || (old ? await self.registration.pushManager.subscribe(old.options) : null);
    const send = (method, body) => fetch('/api/push/subscriptions', {
      method,
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
    });
    if (fresh) await send('POST', fresh.toJSON());
    if (old && (!fresh || fresh.endpoint !== old.endpoint)) await send('DELETE', { endpoint: old.endpoint });
  })());
});
