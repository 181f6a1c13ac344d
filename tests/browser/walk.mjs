// The seller's inbox page (GET /) walked as a seller would, in headless Chromium (Debian's
// chromium, driven by playwright-core), against the local runner and its sandbox Mercado
// Livre. Run by tests/tests/browser_inbox.rs, which starts the runner; see there.
//
// The browser reaches the runner through an HTTP proxy of this script's (PROXY_PORT): "the
// network", which can end the event streams and hold their reconnections, so the test can
// make things happen while the page is disconnected. The test itself talks to the
// runner straight (RUNNER_URL).
//
// Fails (exit 1) at the first step that does not go as a seller expects, and at the end when
// the walking page logged any console error, uncaught exception or Content-Security-Policy
// violation: none is allowed. Chromium logs "Failed to load resource" for every response
// with an error status and every connection cut or refused, whatever the page does with it,
// so the walk causes none:
// - signed out, the page learns it from GET auth/session (200 {"signed_in": false}), not
//   from v1/me's 401;
// - the event stream is ended cleanly, as the runner ends one when its time is up
//   (EVENTS_STREAM_MS), not cut mid-response (Chromium logs that as
//   ERR_INCOMPLETE_CHUNKED_ENCODING), and its reconnection is held (unanswered, never
//   refused) until it is let through. A connection cut by the network is therefore not
//   walked; the page takes the same path for both (the EventSource reconnects by itself,
//   with Last-Event-ID), and the walk proves the resume shows what arrived meanwhile once.
// Two things cannot be shown without an error status: a reconnection the server refuses
// (the page then reconnects by itself, with ?last_event_id=) and an answer throttled by
// Mercado Livre (429, shown by its title). They are proven on a second page of the same
// browser, through a proxy of its own, whose console must log exactly those two failed
// loads (URL and status) and nothing else.
// Screenshots of every step go to SCREENSHOTS.

import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (tests/tests/browser_inbox.rs sets it)`);
  return value;
}

const RUNNER = required('RUNNER_URL');
const PROXY_PORT = Number(required('PROXY_PORT'));
const CHROMIUM = required('CHROMIUM');
const SCREENSHOTS = required('SCREENSHOTS');
const META_APP_SECRET = required('META_APP_SECRET');
const PAGE = `http://127.0.0.1:${PROXY_PORT}`;

const SELLER = 468424240;
const NICKNAME = 'LOJA_DO_WALK';
const PHONE_NUMBER_ID = '106540352242922';
const STEP_TIMEOUT_MS = 20000;

// ------------------------------------------------------------------ the network

const isStream = (url) => new URL(url, 'http://any').pathname === '/v1/events';

/** An HTTP proxy to the runner that can end the event streams and hold their
 * reconnections (every other request goes through). */
class Network {
  constructor(target) {
    this.target = new URL(target);
    /** The event streams going through: {response, upstream, ended}. */
    this.streams = new Set();
    /** The event-stream requests held: {request, response}. */
    this.waiting = [];
    this.holding = false;
    this.server = http.createServer((request, response) => this.accept(request, response));
  }

  /** Listens on `port` (0: any free one); resolves to the port. */
  listen(port) {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => resolve(this.server.address().port));
    });
  }

  accept(request, response) {
    if (this.holding && isStream(request.url)) this.waiting.push({ request, response });
    else this.forward(request, response);
  }

  forward(request, response) {
    if (response.destroyed) return;
    const headers = { ...request.headers };
    delete headers.connection;
    const upstream = http.request({
      hostname: this.target.hostname,
      port: this.target.port,
      method: request.method,
      path: request.url,
      headers,
      agent: false,
    });
    const stream = isStream(request.url) ? { response, upstream, ended: false } : null;
    if (stream) this.streams.add(stream);
    upstream.on('response', (answer) => {
      // Hop-by-hop headers are this connection's own.
      const raw = [];
      for (let index = 0; index < answer.rawHeaders.length; index += 2) {
        const name = answer.rawHeaders[index];
        if (!/^(connection|keep-alive|transfer-encoding)$/i.test(name)) raw.push(name, answer.rawHeaders[index + 1]);
      }
      response.writeHead(answer.statusCode, answer.statusMessage, raw);
      answer.pipe(response);
      answer.on('error', () => {
        if (!stream?.ended) response.destroy();
      });
    });
    upstream.on('error', () => {
      if (!stream?.ended) response.destroy();
    });
    response.on('close', () => {
      if (stream) this.streams.delete(stream);
      if (!response.writableFinished || stream) upstream.destroy();
    });
    request.pipe(upstream);
  }

  /** Ends every event stream, as a server ends one (the terminating chunk: a stream cut
   * mid-response would make Chromium log ERR_INCOMPLETE_CHUNKED_ENCODING), and holds the
   * next ones. */
  endStreamsAndHold() {
    this.holding = true;
    for (const stream of this.streams) {
      stream.ended = true;
      stream.upstream.destroy();
      stream.response.end();
    }
    this.streams.clear();
  }

  /** How many event-stream requests wait to be let through. */
  get held() {
    return this.waiting.filter(({ response }) => !response.destroyed).length;
  }

  release() {
    this.holding = false;
    const waiting = this.waiting;
    this.waiting = [];
    for (const { request, response } of waiting) this.forward(request, response);
  }

  /** Answers the held requests 503 (as a server whose store is down would), and lets the
   * next ones through. */
  refuseHeld() {
    this.holding = false;
    const waiting = this.waiting;
    this.waiting = [];
    const body = JSON.stringify({ type: 'about:blank', title: 'Service unavailable', status: 503 });
    for (const { response } of waiting) {
      response.writeHead(503, { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(body) });
      response.end(body);
    }
  }

  close() {
    for (const { response } of this.waiting) response.destroy();
    this.server.closeAllConnections();
    this.server.close();
  }
}

// ------------------------------------------------------------------ the walk's tools

let step = 'start';
let shots = 0;
/** What the walking page logged as an error: any fails the walk. */
const errors = [];

function begin(name) {
  step = name;
  console.log(`walk: ${name}`);
}

function check(condition, message) {
  if (!condition) throw new Error(`${step}: ${message}`);
}

async function until(description, probe, timeout = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${step}: ${description} (waited ${timeout} ms)`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function shot(page, name) {
  shots += 1;
  const file = path.join(SCREENSHOTS, `${String(shots).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
}

/** The runner, straight (not through the proxy); with the browser's session when given. */
async function runner(pathname, { method = 'GET', body, headers = {}, session } = {}) {
  const all = { ...headers };
  if (body !== undefined && !all['content-type']) all['content-type'] = 'application/json';
  if (session) all.cookie = `${session.name}=${session.value}`;
  const response = await fetch(`${RUNNER}${pathname}`, {
    method,
    headers: all,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, json, text };
}

async function ask(text) {
  const asked = await runner('/sandbox/mercadolivre/questions', {
    method: 'POST',
    body: { seller_id: SELLER, item_id: 'MLB3859205311', text },
  });
  check(asked.status === 201, `the sandbox took no question: ${asked.status} ${asked.text}`);
  return asked.json.question.id;
}

/** A WhatsApp text message from `from`, signed as Meta signs its webhooks. */
async function whatsapp(from, text) {
  const id = `wamid.${randomUUID()}`;
  const body = JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{
      id: '102290129340398',
      changes: [{
        field: 'messages',
        value: {
          messaging_product: 'whatsapp',
          metadata: { display_phone_number: '5511955550000', phone_number_id: PHONE_NUMBER_ID },
          contacts: [{ profile: { name: `Cliente ${from.slice(-4)}` }, wa_id: from }],
          messages: [{
            from,
            id,
            timestamp: String(Math.floor(Date.now() / 1000)),
            type: 'text',
            text: { body: text },
          }],
        },
      }],
    }],
  });
  const signature = createHmac('sha256', META_APP_SECRET).update(body).digest('hex');
  const sent = await runner('/webhooks/meta', {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', 'x-hub-signature-256': `sha256=${signature}` },
  });
  check(sent.status === 200, `the webhook was refused: ${sent.status} ${sent.text}`);
  return id;
}

/** Every item of a list of the API, page after page. */
async function everything(pathname, session) {
  const items = [];
  let cursor = null;
  do {
    const separator = pathname.includes('?') ? '&' : '?';
    const page = await runner(
      cursor ? `${pathname}${separator}cursor=${encodeURIComponent(cursor)}` : pathname,
      { session },
    );
    check(page.status === 200, `${pathname}: ${page.status} ${page.text}`);
    items.push(...page.json.items);
    cursor = page.json.next_cursor;
  } while (cursor);
  return items;
}

async function count(page, selector) {
  return page.locator(selector).count();
}

// ------------------------------------------------------------------ the walk

async function walk(context, page, network) {
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  const documents = [];
  page.on('response', (response) => {
    if (response.request().resourceType() === 'document') documents.push(response);
  });
  const streams = [];
  page.on('request', (request) => {
    if (isStream(request.url())) streams.push(request);
  });

  // 1. Signed out: the page asks auth/session (200 either way), shows a sign-in link, and
  //    does not redirect.
  begin('signed out');
  const probed = page.waitForResponse((answer) => new URL(answer.url()).pathname === '/auth/session');
  const response = await page.goto(`${PAGE}/`);
  check(response.status() === 200, `GET / answered ${response.status()}`);
  const headers = response.headers();
  const policy = headers['content-security-policy'] || '';
  for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]) {
    check(policy.includes(directive), `the page's CSP lacks ${directive}: ${policy}`);
  }
  check(!policy.includes('unsafe-inline') && !policy.includes('unsafe-eval'), `CSP: ${policy}`);
  check(headers['x-content-type-options'] === 'nosniff', 'no X-Content-Type-Options: nosniff');
  check(headers['referrer-policy'] === 'no-referrer', 'no Referrer-Policy');
  const signIn = page.getByRole('link', { name: 'Sign in with Mercado Livre' });
  await signIn.waitFor();
  await page.waitForTimeout(500);
  check(page.url() === `${PAGE}/`, `the signed-out page went to ${page.url()} by itself`);
  check(documents.length === 1, 'the page navigated by itself');
  await shot(page, 'signed-out');
  const probe = await probed;
  check(probe.status() === 200, `GET auth/session answered ${probe.status()}`);
  const signedOut = await probe.json();
  check(signedOut.signed_in === false, `GET auth/session signed out: ${JSON.stringify(signedOut)}`);

  // 2. Sign in, with the keyboard: Tab past the skip link to the sign-in link, Enter;
  //    then Authorize on the sandbox's consent page.
  begin('sign in');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  check(
    await signIn.evaluate((link) => link === document.activeElement),
    'Tab does not reach the sign-in link second (after the skip link)',
  );
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/sandbox\/mercadolivre\/authorization/);
  await page.getByLabel('Nickname').fill(NICKNAME);
  await shot(page, 'consent');
  await page.getByRole('button', { name: 'Authorize' }).click();
  await page.waitForURL(`${PAGE}/`);
  await page.locator('#live[data-state="live"]').waitFor();
  check((await page.locator('#seller-name').textContent()) === NICKNAME, 'the seller is not named');
  check((await page.locator('#grant').textContent()) === 'Mercado Livre connected', 'grant status');
  check(await page.locator('#reconnect').isHidden(), 'a reconnect link for a good grant');
  const session = (await context.cookies()).find((cookie) => cookie.name === '__Host-sellerhub_session');
  check(session && session.httpOnly && session.secure, 'no HttpOnly Secure __Host- session cookie');
  await shot(page, 'inbox');
  const linked = await runner('/v1/channels/whatsapp', {
    method: 'PUT',
    body: { phone_number_id: PHONE_NUMBER_ID },
    session,
  });
  check(linked.status === 201, `linking the number: ${linked.status} ${linked.text}`);

  // 3. A question asked on the sandbox appears, without a reload.
  begin('question arrives live');
  await page.evaluate(() => {
    window.sameDocument = true;
  });
  const first = await ask('Tem pronta entrega para o farol?');
  const firstItem = page.locator(`#unanswered [data-question-id="${first}"]`);
  await firstItem.waitFor();
  check(await page.evaluate(() => window.sameDocument === true), 'the page reloaded');
  await page.locator('#questions-count', { hasText: '1' }).waitFor();
  await page.locator('#notifications-count', { hasText: '1' }).waitFor();
  await shot(page, 'question-live');

  // 4. Answer it: the button is disabled while the answer is posted, then it shows as
  //    answered.
  begin('answer');
  const field = firstItem.getByLabel('Your answer');
  await field.fill('Sim! Enviamos hoje.');
  let disabledWhilePosting = null;
  await page.route('**/v1/questions/*/answer', async (route) => {
    disabledWhilePosting = await firstItem.getByRole('button', { name: 'Sending…' }).isDisabled();
    await route.continue();
  });
  await firstItem.getByRole('button', { name: 'Send answer' }).click();
  const answered = page.locator(`#answered [data-question-id="${first}"]`);
  await answered.locator('.answer', { hasText: 'Sim! Enviamos hoje.' }).waitFor();
  await page.unroute('**/v1/questions/*/answer');
  check(disabledWhilePosting === true, 'the button was not disabled while the answer was posted');
  check((await count(page, `[data-question-id="${first}"]`)) === 1, 'the question shows twice');
  check(
    await page.evaluate(() => document.activeElement && document.activeElement !== document.body),
    'focus was lost after answering',
  );
  const requests = await runner(`/sandbox/mercadolivre/questions/${first}/answer_requests`);
  check(requests.json.answer_requests === 1, `Mercado Livre got ${requests.text}`);
  await shot(page, 'answered');

  // 5. A WhatsApp message, signed as Meta signs them, appears live.
  begin('message arrives live');
  const customer = '5511987654321';
  const conversationId = `whatsapp:${customer}`;
  await whatsapp(customer, 'Oi! Vocês entregam no sábado?');
  await page.getByRole('tab', { name: /Conversations/ }).click();
  const conversation = page.locator(`[data-conversation-id="${conversationId}"]`);
  await conversation.getByText('Oi! Vocês entregam no sábado?').waitFor();
  await conversation.getByText('1 unread').waitFor();
  await shot(page, 'message-live');
  await conversation.getByRole('button').click();
  await page.locator('#messages li', { hasText: 'Oi! Vocês entregam no sábado?' }).waitFor();
  check(
    await page.locator('#conversation-title').evaluate((title) => title === document.activeElement),
    'opening a conversation does not move focus to it',
  );
  await until('the conversation to be marked read', async () => {
    const list = await runner('/v1/conversations', { session });
    return list.json.items.find((item) => item.id === conversationId)?.unread === 0;
  });
  await shot(page, 'conversation');

  // 6. The stream ends and the network holds the browser's reconnection while a question
  //    and two messages arrive; let through, the page resumes after the last event it had
  //    (Last-Event-ID) and shows each once.
  begin('dropped stream');
  const streamsBefore = streams.length;
  network.endStreamsAndHold();
  await page.locator('#live[data-state="reconnecting"]').waitFor();
  const second = await ask('Qual é a garantia?');
  const meanwhile = [
    await whatsapp(customer, 'Pode ser às 10h?'),
    await whatsapp(customer, 'Obrigado!'),
  ];
  await until('the meanwhile arrivals to be in the inbox', async () => {
    const waiting = await runner('/v1/questions', { session });
    const messages = await runner(`/v1/conversations/${encodeURIComponent(conversationId)}/messages`, { session });
    const ids = new Set(messages.json.items.map((message) => message.id));
    return waiting.json.items.some((question) => question.id === second)
      && meanwhile.every((id) => ids.has(id));
  });
  await until('the browser to try to reconnect', async () => network.held > 0);
  check((await count(page, `[data-question-id="${second}"]`)) === 0, 'arrived while disconnected?');
  await shot(page, 'disconnected');
  network.release();
  await page.locator('#live[data-state="live"]').waitFor();
  await page.locator(`#messages li[data-message-id="${meanwhile[1]}"]`).waitFor();
  await page.getByRole('tab', { name: /Questions/ }).click();
  await page.locator(`#unanswered [data-question-id="${second}"]`).waitFor();
  const resumed = streams.slice(streamsBefore);
  check(resumed.length > 0, 'the page did not reconnect');
  const resumedFrom = (await resumed[resumed.length - 1].allHeaders())['last-event-id'];
  check(/^[0-9a-f]{32}$/.test(resumedFrom || ''), `no Last-Event-ID on the reconnection: ${resumedFrom}`);
  // Give a duplicate time to show, then count.
  await page.waitForTimeout(1000);
  check((await count(page, `[data-question-id="${second}"]`)) === 1, 'the meanwhile question is not shown once');
  check((await count(page, `[data-question-id="${first}"]`)) === 1, 'the first question shows twice');
  for (const id of meanwhile) {
    check((await count(page, `#messages li[data-message-id="${id}"]`)) === 1, `message ${id} is not shown once`);
  }
  check((await count(page, '#messages li')) === 3, 'the conversation does not show its 3 messages once each');
  const notes = await everything('/v1/notifications', session);
  await page.getByRole('tab', { name: /Notifications/ }).click();
  check((await count(page, '#notifications li')) === notes.length, 'notifications shown ≠ notifications held');
  await shot(page, 'resumed');
  await page.getByRole('tab', { name: /Questions/ }).click();

  // 7. What only an error status shows, on a page of its own (see refusals).
  await refusals(context, page, { session, customer, conversationId, question: second });

  // 8. More than a page: opened afresh, the page shows the first page of conversations
  //    and "load more" brings the rest through the cursor, each once.
  begin('load more');
  for (let n = 0; n < 21; n += 1) await whatsapp(`55119000${String(n).padStart(5, '0')}`, `Mensagem ${n}`);
  const all = await until('the 21 new conversations to be in the inbox', async () => {
    const items = await everything('/v1/conversations', session);
    return items.length === 22 ? items : null;
  });
  await page.reload();
  await page.locator('#live[data-state="live"]').waitFor();
  await page.getByRole('tab', { name: /Conversations/ }).click();
  const more = page.getByRole('button', { name: 'Load more conversations' });
  await more.waitFor();
  check((await count(page, '#conversations > li')) === 20, 'the first page is not 20 conversations');
  await more.click();
  await until('every conversation to show', async () => (await count(page, '#conversations > li')) === all.length);
  check(await more.isHidden(), '"load more" still shows after the last page');
  const shown = await page.locator('#conversations > li').evaluateAll(
    (items) => items.map((item) => item.dataset.conversationId),
  );
  check(new Set(shown).size === shown.length, 'a conversation shows twice');
  check(all.every((item) => shown.includes(item.id)), 'a conversation is missing');
  await shot(page, 'load-more');

  // 9. The keyboard: arrows move between the tabs; every field has a label and every
  //    button a name.
  begin('keyboard and labels');
  await page.getByRole('tab', { name: /Conversations/ }).focus();
  await page.keyboard.press('ArrowRight');
  check(
    await page.getByRole('tab', { name: /Notifications/ }).evaluate(
      (tab) => tab === document.activeElement && tab.getAttribute('aria-selected') === 'true',
    ),
    'ArrowRight does not select the next tab',
  );
  check(await page.locator('#panel-notifications').isVisible(), 'the tab does not show its panel');
  await page.keyboard.press('Home');
  check(await page.locator('#panel-questions').isVisible(), 'Home does not go to the first tab');
  const unnamed = await page.evaluate(() => [
    ...[...document.querySelectorAll('textarea, input, select')].filter((field) => field.labels.length === 0),
    ...[...document.querySelectorAll('button, a[href]')].filter(
      (control) => !(control.getAttribute('aria-label') || control.textContent).trim(),
    ),
  ].map((node) => node.outerHTML.slice(0, 80)));
  check(unnamed.length === 0, `controls without a name: ${unnamed.join(' | ')}`);

  // 10. A notification marked read: the unread count goes down by one, here and in the API.
  begin('notification read');
  await page.getByRole('tab', { name: /Notifications/ }).click();
  const unreadBefore = Number(await page.locator('#notifications-count').textContent());
  const unread = page.locator('#notifications li[data-read="false"]').first();
  const noteId = await unread.getAttribute('data-notification-id');
  await unread.getByRole('button', { name: /^Mark as read/ }).click();
  await page.locator(`#notifications li[data-notification-id="${noteId}"][data-read="true"]`).waitFor();
  const unreadAfter = Number(await page.locator('#notifications-count').textContent());
  check(unreadAfter === unreadBefore - 1, `the unread count went from ${unreadBefore} to ${unreadAfter}`);
  const held = await runner('/v1/notifications?limit=1', { session });
  check(held.json.unread_count === unreadAfter, `the API counts ${held.json.unread_count} unread`);
  await shot(page, 'notification-read');

  // 11. Sign out: the session is revoked and the page shows the sign-in link again.
  begin('sign out');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await signIn.waitFor();
  check(await page.locator('#inbox').isHidden(), 'the inbox still shows');
  check(await page.locator('#live').evaluate((live) => live.dataset.state === 'offline'), 'the stream is open');
  const after = await runner('/v1/me', { session });
  check(after.status === 401, `the old session still works: ${after.status}`);
  check(
    !(await context.cookies()).some((cookie) => cookie.name === '__Host-sellerhub_session'),
    'the session cookie is still there',
  );
  await shot(page, 'signed-out-again');

  const violations = await page.evaluate(() => window.cspViolations);
  check(violations.length === 0, `Content-Security-Policy violations: ${violations.join(', ')}`);
}

/** What only an error status shows, on a second page of the same browser (the seller's
 * session is shared), through a proxy of its own so the walking page is not touched:
 * - the stream ends and its reconnection is refused (503): the browser gives up, and the
 *   page reconnects by itself after the last event it had (?last_event_id=);
 * - Mercado Livre throttles an answer (429): the form shows the problem's title.
 * Chromium logs each refusal as "Failed to load resource"; this page's console must log
 * exactly those two, for those requests, and nothing else. */
async function refusals(context, walking, { session, customer, conversationId, question }) {
  const network = new Network(RUNNER);
  const origin = `http://127.0.0.1:${await network.listen(0)}`;
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  const logged = [];
  page.on('console', (message) => {
    if (message.type() === 'error') logged.push({ text: message.text(), url: message.location().url || '' });
  });
  page.on('pageerror', (error) => logged.push({ text: `uncaught ${error.message}`, url: '' }));
  const streams = [];
  page.on('request', (request) => {
    if (isStream(request.url())) streams.push(new URL(request.url()));
  });
  try {
    // The stream ends and its reconnection is refused.
    begin('refused reconnection (second page)');
    await page.goto(`${origin}/`);
    await page.locator('#live[data-state="live"]').waitFor();
    await page.getByRole('tab', { name: /Conversations/ }).click();
    await page.locator(`[data-conversation-id="${conversationId}"]`).getByRole('button').click();
    await page.locator('#messages li').nth(2).waitFor();
    // An event applied, so the page knows where it is in the stream.
    const before = await whatsapp(customer, 'Ainda estão aí?');
    await page.locator(`#messages li[data-message-id="${before}"]`).waitFor();
    const streamsBefore = streams.length;
    network.endStreamsAndHold();
    await page.locator('#live[data-state="reconnecting"]').waitFor();
    const later = await whatsapp(customer, 'Alô?');
    await until('the message to be in the inbox', async () => {
      const messages = await runner(`/v1/conversations/${encodeURIComponent(conversationId)}/messages`, { session });
      return messages.json.items.some((message) => message.id === later);
    });
    await until('the browser to try to reconnect', async () => network.held > 0);
    network.refuseHeld();
    await page.locator('#live[data-state="live"]').waitFor();
    await page.locator(`#messages li[data-message-id="${later}"]`).waitFor();
    const retried = streams.slice(streamsBefore);
    const own = retried.find((url) => url.searchParams.has('last_event_id'));
    check(own && /^[0-9a-f]{32}$/.test(own.searchParams.get('last_event_id')), `the page did not resume by itself: ${retried.join(' ')}`);
    await page.waitForTimeout(1000);
    for (const [shown, name] of [[page, 'this page'], [walking, 'the walking page']]) {
      for (const id of [before, later]) {
        check((await count(shown, `#messages li[data-message-id="${id}"]`)) === 1, `${name}: message ${id} is not shown once`);
      }
      check((await count(shown, '#messages li')) === 5, `${name}: the conversation does not show its 5 messages once each`);
    }
    await shot(page, 'refused-reconnection');
    await page.getByRole('tab', { name: /Questions/ }).click();

    // Mercado Livre answers 429: the answer form shows the problem's title, and the
    // question can be answered again later.
    begin('throttled answer (second page)');
    const fault = await runner('/sandbox/mercadolivre/faults', { method: 'POST', body: { mode: '429', count: 1 } });
    check(fault.status === 200, `the fault switch: ${fault.status} ${fault.text}`);
    const item = page.locator(`#unanswered [data-question-id="${question}"]`);
    await item.getByLabel('Your answer').fill('Um ano de garantia.');
    await item.getByRole('button', { name: 'Send answer' }).click();
    const alert = item.getByRole('alert');
    await alert.filter({ hasText: 'Too many requests' }).waitFor();
    check(/^Too many requests\. Try again in \d+ seconds\.$/.test(await alert.textContent()), `alert: ${await alert.textContent()}`);
    check(await item.getByRole('button', { name: 'Send answer' }).isEnabled(), 'the button stays disabled');
    check(
      await item.getByLabel('Your answer').evaluate((node) => node === document.activeElement),
      'focus is not back on the answer',
    );
    check((await item.getByLabel('Your answer').inputValue()) === 'Um ano de garantia.', 'the answer was lost');
    await shot(page, 'throttled');

    const wanted = [
      { text: 'Failed to load resource: the server responded with a status of 503 (Service Unavailable)', url: `${origin}/v1/events` },
      {
        text: 'Failed to load resource: the server responded with a status of 429 (Too Many Requests)',
        url: `${origin}/v1/questions/${question}/answer`,
      },
    ];
    check(
      JSON.stringify(logged) === JSON.stringify(wanted),
      `the second page's console logged ${JSON.stringify(logged)}, not exactly ${JSON.stringify(wanted)}`,
    );
    const violations = await page.evaluate(() => window.cspViolations);
    check(violations.length === 0, `Content-Security-Policy violations: ${violations.join(', ')}`);
  } catch (error) {
    await shot(page, 'failed-second-page').catch(() => {});
    throw error;
  } finally {
    await page.close();
    network.close();
  }
}

async function main() {
  const network = new Network(RUNNER);
  await network.listen(PROXY_PORT);
  const profile = mkdtempSync(path.join(os.tmpdir(), 'sellerhub-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1100, height: 800 },
  });
  let failure = null;
  try {
    const page = context.pages()[0] || await context.newPage();
    await context.addInitScript(() => {
      window.cspViolations = [];
      document.addEventListener('securitypolicyviolation', (event) => {
        window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
      });
    });
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(`${step}: console error "${message.text()}" (${message.location().url || ''})`);
    });
    page.on('pageerror', (error) => errors.push(`${step}: uncaught ${error.message}`));
    try {
      await walk(context, page, network);
    } catch (error) {
      failure = error;
      await shot(page, 'failed').catch(() => {});
    }
  } finally {
    await context.close();
    network.close();
    rmSync(profile, { recursive: true, force: true });
  }
  if (failure) throw failure;
  if (errors.length) throw new Error(`the walking page logged errors:\n  ${errors.join('\n  ')}`);
  console.log(`walk: done, ${shots} screenshots in ${SCREENSHOTS}`);
}

main().catch((error) => {
  console.error(`walk failed: ${error.stack || error}`);
  if (errors.length) console.error(`the walking page logged errors:\n  ${errors.join('\n  ')}`);
  process.exit(1);
});
