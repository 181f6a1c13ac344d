// The seller's inbox page: plain JavaScript against the sellerhub API on this origin
// (relative URLs, so it works under an API Gateway stage as at the local runner's root).
//
// - Signed out (GET auth/session answers {"signed_in": false}): a link to sign in, never an
//   automatic redirect. The page asks auth/session, not v1/me: both know the session, but
//   v1/me answers 401 signed out, and a browser logs every error status as a console error.
// - Signed in: the seller and their grant, three tabs (questions, conversations,
//   notifications), each list paged through the API's cursors ("load more").
// - Live: an EventSource on v1/events. Every event carries its id; the browser resumes
//   after the last one (Last-Event-ID) when a stream ends or drops, and when the browser
//   gives up (an error status) the page reconnects itself with ?last_event_id=. Events
//   at or before the last id applied are ignored, and every list is keyed by id, so
//   nothing shows twice.
//
// The DOM is built with createElement and textContent only: no HTML is ever parsed from
// data (the Content-Security-Policy enforces it with Trusted Types).

const ANSWER_MAX = 2000;
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 30000;

// ------------------------------------------------------------------ the API

/** An RFC 9457 problem the API answered with (or a network failure, status 0). */
class Problem extends Error {
  constructor(status, title, detail, retryAfter) {
    super(title);
    this.status = status;
    this.title = title;
    this.detail = detail || '';
    this.retryAfter = retryAfter;
  }

  /** What the seller reads: the problem's title, and what to do about it. */
  get text() {
    if (this.status === 429) {
      const seconds = Number.parseInt(this.retryAfter, 10);
      return Number.isFinite(seconds) && seconds > 0
        ? `${this.title}. Try again in ${seconds} seconds.`
        : `${this.title}. Try again later.`;
    }
    return this.detail ? `${this.title}: ${this.detail}` : this.title;
  }
}

let onUnauthorized = () => {};

/** Calls the API: its JSON, or throws a Problem. */
async function call(path, { method = 'GET', body } = {}) {
  const headers = { accept: 'application/json, application/problem+json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new Problem(0, 'Network error', 'the server could not be reached; retry in a moment');
  }
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json().catch(() => null) : null;
  if (response.ok) return data;
  const problem = new Problem(
    response.status,
    (data && data.title) || response.statusText || `Error ${response.status}`,
    data && data.detail,
    response.headers.get('retry-after'),
  );
  if (response.status === 401) onUnauthorized();
  throw problem;
}

function withCursor(path, cursor) {
  if (!cursor) return path;
  return `${path}${path.includes('?') ? '&' : '?'}cursor=${encodeURIComponent(cursor)}`;
}

/** A list the API pages through with cursors, kept by id, shown in `order`. */
class Paged {
  constructor(path, order) {
    this.path = path;
    this.order = order;
    this.items = new Map();
    this.cursor = null;
    this.hasMore = false;
    this.loaded = false;
  }

  /** The first page again, merged into what is shown. "Load more" goes on where it was,
   * unless items this page pushed down may not have been seen: then from this page on
   * (what shows again is merged by id). */
  async loadFirst() {
    const page = await call(this.path);
    const last = page.items[page.items.length - 1];
    const gap = !this.loaded || !page.has_more || (last !== undefined && !this.items.has(String(last.id)));
    this.merge(page.items);
    if (gap) {
      this.cursor = page.next_cursor;
      this.hasMore = page.has_more;
    }
    this.loaded = true;
    return page;
  }

  async loadMore() {
    const page = await call(withCursor(this.path, this.cursor));
    this.merge(page.items);
    this.cursor = page.next_cursor;
    this.hasMore = page.has_more;
    return page;
  }

  merge(items) {
    for (const item of items) this.items.set(String(item.id), item);
  }

  get(id) {
    return this.items.get(String(id));
  }

  set(item) {
    this.items.set(String(item.id), item);
  }

  delete(id) {
    this.items.delete(String(id));
  }

  sorted() {
    return [...this.items.values()].sort(this.order);
  }

  clear() {
    this.items.clear();
    this.cursor = null;
    this.hasMore = false;
    this.loaded = false;
  }
}

// The API's own orders, newest first, ties broken as its keys break them.
const descending = (a, b) => (a < b ? 1 : a > b ? -1 : 0);
const newestAsked = (a, b) => (b.asked_at_ms || 0) - (a.asked_at_ms || 0) || b.id - a.id;
const newestUpdated = (a, b) => (b.updated_at_ms || 0) - (a.updated_at_ms || 0) || descending(a.id, b.id);
const newestAt = (a, b) => (b.at_ms || 0) - (a.at_ms || 0) || descending(String(a.id), String(b.id));
// Notification ids are UUIDv7s: their order is their time's.
const newestId = (a, b) => descending(a.id, b.id);

// ------------------------------------------------------------------ the DOM

const $ = (id) => document.getElementById(id);

/** An element: attributes (`text` sets its text, `on…` adds a listener), then children. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** Makes `container`'s children exactly `nodes`, moving only what is out of place (so a
 * field being typed in keeps its text and focus). */
function reconcile(container, nodes) {
  nodes.forEach((node, index) => {
    const current = container.children[index];
    if (current !== node) container.insertBefore(node, current || null);
  });
  while (container.children.length > nodes.length) container.lastElementChild.remove();
}

function when(ms) {
  if (!ms) return '';
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

const CHANNELS = { mercadolivre: 'Mercado Livre', whatsapp: 'WhatsApp' };

function announce(text) {
  $('announce').textContent = text;
}

function showPageError(problem) {
  const node = $('page-error');
  node.textContent = problem.text;
  node.hidden = false;
}

function clearPageError() {
  $('page-error').hidden = true;
}

/** Runs `action` with `button` disabled; a failure is shown on the page. */
async function busy(button, action) {
  button.disabled = true;
  try {
    await action();
    clearPageError();
  } catch (problem) {
    if (problem instanceof Problem) showPageError(problem);
    else throw problem;
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ state

const questions = {
  unanswered: new Paged('v1/questions?status=UNANSWERED', newestAsked),
  answered: new Paged('v1/questions?status=ANSWERED', newestAsked),
};
const conversations = new Paged('v1/conversations', newestUpdated);
const notifications = new Paged('v1/notifications', newestId);
let unreadNotifications = 0;
/** The conversation shown, and its messages. */
let open = null;

// ------------------------------------------------------------------ questions

const questionNodes = new Map();

/** Puts `question` where its status says: waiting for an answer, or done. */
function upsertQuestion(question) {
  const waiting = question.status === 'UNANSWERED';
  (waiting ? questions.unanswered : questions.answered).set(question);
  (waiting ? questions.answered : questions.unanswered).delete(question.id);
}

function renderQuestions() {
  for (const [key, list] of Object.entries(questions)) {
    const items = list.sorted();
    reconcile($(key), items.map(questionNode));
    $(`${key}-empty`).hidden = items.length > 0 || !list.loaded;
    $(`${key}-more`).hidden = !list.hasMore;
  }
  const waiting = questions.unanswered.items.size;
  $('questions-count').textContent = waiting ? `${waiting}${questions.unanswered.hasMore ? '+' : ''}` : '';
  for (const id of questionNodes.keys()) {
    if (!questions.unanswered.get(id) && !questions.answered.get(id)) questionNodes.delete(id);
  }
}

function questionNode(question) {
  const key = String(question.id);
  const signature = JSON.stringify(question);
  const cached = questionNodes.get(key);
  if (cached && cached.signature === signature) return cached.node;
  const node = question.status === 'UNANSWERED' ? unansweredNode(question) : answeredNode(question);
  // A rebuilt question keeps the answer being typed.
  const typed = cached && cached.node.querySelector('textarea');
  const field = node.querySelector('textarea');
  if (typed && field) field.value = typed.value;
  questionNodes.set(key, { signature, node });
  return node;
}

function questionMeta(question) {
  return el(
    'p',
    { class: 'meta' },
    `Item ${question.item_id} · asked ${when(question.asked_at_ms)} `,
    el('span', { class: 'status', text: question.status.replaceAll('_', ' ').toLowerCase() }),
  );
}

function unansweredNode(question) {
  const fieldId = `answer-${question.id}`;
  const errorId = `answer-error-${question.id}`;
  const field = el('textarea', {
    id: fieldId,
    name: 'text',
    required: true,
    maxlength: ANSWER_MAX,
    'aria-describedby': errorId,
  });
  const button = el('button', { type: 'submit', text: 'Send answer' });
  const error = el('p', { id: errorId, class: 'error', role: 'alert', hidden: true });
  const form = el(
    'form',
    { class: 'answer-form', 'aria-label': `Answer question ${question.id}` },
    el('label', { for: fieldId, text: 'Your answer' }),
    field,
    button,
    error,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    answer(question, { form, field, button, error });
  });
  return el(
    'li',
    { class: 'question', 'data-question-id': question.id, 'data-status': question.status },
    questionMeta(question),
    el('p', { class: 'text', text: question.text }),
    form,
  );
}

function answeredNode(question) {
  const answerText = question.answer && question.answer.text;
  return el(
    'li',
    {
      class: 'question',
      'data-question-id': question.id,
      'data-status': question.status,
      tabindex: -1,
    },
    questionMeta(question),
    el('p', { class: 'text', text: question.text }),
    answerText
      ? el('p', { class: 'answer' }, el('span', { class: 'visually-hidden', text: 'Answer: ' }), answerText)
      : null,
  );
}

async function answer(question, { form, field, button, error }) {
  const text = field.value.trim();
  if (!text) {
    error.textContent = 'Write an answer first.';
    error.hidden = false;
    field.focus();
    return;
  }
  button.disabled = true;
  field.readOnly = true;
  button.textContent = 'Sending…';
  form.setAttribute('aria-busy', 'true');
  error.hidden = true;
  try {
    const answered = await call(`v1/questions/${encodeURIComponent(question.id)}/answer`, {
      method: 'POST',
      body: { text },
    });
    upsertQuestion(answered);
    renderQuestions();
    announce(`Answer to question ${question.id} published.`);
    const node = questionNodes.get(String(question.id));
    if (node) node.node.focus();
  } catch (problem) {
    if (!(problem instanceof Problem)) throw problem;
    error.textContent = problem.text;
    error.hidden = false;
    button.disabled = false;
    field.readOnly = false;
    button.textContent = 'Send answer';
    form.removeAttribute('aria-busy');
    field.focus();
  }
}

// ------------------------------------------------------------------ conversations

function renderConversations() {
  const items = conversations.sorted();
  reconcile($('conversations'), items.map(conversationNode));
  $('conversations-empty').hidden = items.length > 0 || !conversations.loaded;
  $('conversations-more').hidden = !conversations.hasMore;
  const unread = items.filter((conversation) => conversation.unread > 0).length;
  $('conversations-count').textContent = unread ? String(unread) : '';
}

const conversationNodes = new Map();

function conversationNode(conversation) {
  const signature = JSON.stringify(conversation);
  const cached = conversationNodes.get(conversation.id);
  if (cached && cached.signature === signature) return cached.node;
  const last = conversation.last_message;
  const node = el(
    'li',
    { 'data-conversation-id': conversation.id },
    el(
      'button',
      {
        type: 'button',
        class: 'conversation-button',
        'data-unread': String(conversation.unread > 0),
        onclick: () => openConversation(conversation.id),
      },
      el('span', { class: 'channel', text: CHANNELS[conversation.channel] || conversation.channel }),
      el('strong', { text: conversation.title || conversation.external_id }),
      last ? el('span', { class: 'text', text: last.text || `(${last.kind || 'message'})` }) : null,
      el(
        'span',
        { class: 'meta' },
        when(conversation.updated_at_ms),
        conversation.unread > 0 ? ` · ${conversation.unread} unread` : '',
      ),
    ),
  );
  conversationNodes.set(conversation.id, { signature, node });
  return node;
}

async function openConversation(id) {
  const conversation = conversations.get(id);
  if (!conversation) return;
  const messages = new Paged(`v1/conversations/${encodeURIComponent(id)}/messages`, newestAt);
  open = { id, messages };
  $('conversation-title').textContent = `${conversation.title || conversation.external_id} (${CHANNELS[conversation.channel] || conversation.channel})`;
  $('messages').replaceChildren();
  $('conversation-list').hidden = true;
  $('conversation').hidden = false;
  $('conversation-title').focus();
  try {
    await messages.loadFirst();
    if (open && open.messages === messages) renderMessages();
    await markRead(id);
  } catch (problem) {
    if (problem instanceof Problem) showPageError(problem);
    else throw problem;
  }
}

function closeConversation() {
  const id = open && open.id;
  open = null;
  $('conversation').hidden = true;
  $('conversation-list').hidden = false;
  const button = id && document.querySelector(`[data-conversation-id="${CSS.escape(id)}"] button`);
  if (button) button.focus();
}

async function markRead(id) {
  const conversation = conversations.get(id);
  if (!conversation || !(conversation.unread > 0)) return;
  const read = await call(`v1/conversations/${encodeURIComponent(id)}/read`, { method: 'POST' });
  if (read) conversations.set(read);
  renderConversations();
}

function renderMessages() {
  if (!open) return;
  const items = open.messages.sorted();
  reconcile($('messages'), items.map(messageNode));
  $('messages-more').hidden = !open.messages.hasMore;
}

function messageNode(message) {
  const who = message.direction === 'outbound' ? 'You' : 'Buyer';
  return el(
    'li',
    { 'data-direction': message.direction, 'data-message-id': message.id },
    el('p', { class: 'text', text: message.text || `(${message.kind})` }),
    el('p', { class: 'meta', text: `${who} · ${when(message.at_ms)}${message.status ? ` · ${message.status}` : ''}` }),
  );
}

// ------------------------------------------------------------------ notifications

function renderNotifications() {
  const items = notifications.sorted();
  reconcile($('notifications'), items.map(notificationNode));
  $('notifications-empty').hidden = items.length > 0 || !notifications.loaded;
  $('notifications-more').hidden = !notifications.hasMore;
  $('notifications-count').textContent = unreadNotifications ? String(unreadNotifications) : '';
}

function notificationText(notification) {
  const data = notification.data || {};
  switch (notification.type) {
    case 'question.new':
      return `New question: “${data.text}”`;
    case 'message.new':
      return `New ${CHANNELS[data.channel] || ''} message: “${data.text || data.kind}”`;
    case 'order.updated':
      return `Order ${data.order_id}: ${data.status}`;
    default:
      return notification.type;
  }
}

const notificationNodes = new Map();

function notificationNode(notification) {
  const signature = JSON.stringify(notification);
  const cached = notificationNodes.get(notification.id);
  if (cached && cached.signature === signature) return cached.node;
  const text = notificationText(notification);
  const node = el(
    'li',
    { class: 'notification', 'data-read': String(notification.read), 'data-notification-id': notification.id },
    el('p', { class: 'text', text }),
    el('p', { class: 'meta', text: `${when(notification.at_ms)}${notification.read ? ' · read' : ''}` }),
    notification.read
      ? null
      : el('button', {
        type: 'button',
        class: 'secondary',
        text: 'Mark as read',
        'aria-label': `Mark as read: ${text}`,
        onclick: (event) => busy(event.currentTarget, () => readNotification(notification.id)),
      }),
  );
  notificationNodes.set(notification.id, { signature, node });
  return node;
}

async function readNotification(id) {
  const before = notifications.get(id);
  const read = await call(`v1/notifications/${encodeURIComponent(id)}/read`, { method: 'POST' });
  if (before && !before.read && read.read) unreadNotifications = Math.max(0, unreadNotifications - 1);
  notifications.set(read);
  renderNotifications();
  $('tab-notifications').focus();
}

/** `action` run once, a moment after the last of a burst of calls (events come in bursts). */
function debounced(action) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      action().catch((problem) => {
        if (problem instanceof Problem) showPageError(problem);
        else throw problem;
      });
    }, 150);
  };
}

/** The newest notifications and the unread count again. */
const refreshNotifications = debounced(async () => {
  const page = await notifications.loadFirst();
  unreadNotifications = page.unread_count;
  renderNotifications();
});

/** The newest conversations again (a new one's title and counts come from the API). */
const refreshConversations = debounced(async () => {
  await conversations.loadFirst();
  renderConversations();
});

// ------------------------------------------------------------------ live events

let source = null;
/** The id of the last event applied: the stream resumes after it. */
let lastEventId = '';
let reconnectTimer = null;
let reconnectDelay = RECONNECT_MIN_MS;

function setLive(state, text) {
  const node = $('live');
  node.dataset.state = state;
  node.textContent = text;
}

/** Opens the stream (after `lastEventId` when there is one); resolves once it opened or
 * failed, so the lists can be loaded knowing no later event is missed. */
function connect() {
  return new Promise((resolve) => {
    const path = lastEventId ? `v1/events?last_event_id=${encodeURIComponent(lastEventId)}` : 'v1/events';
    const stream = new EventSource(path);
    source = stream;
    stream.addEventListener('open', () => {
      reconnectDelay = RECONNECT_MIN_MS;
      setLive('live', 'Live');
      resolve();
    });
    stream.addEventListener('message', applyEvent);
    stream.addEventListener('error', () => {
      resolve();
      if (source !== stream) return;
      if (stream.readyState === EventSource.CONNECTING) {
        // The stream ended or dropped: the browser reconnects by itself, with Last-Event-ID.
        setLive('reconnecting', 'Reconnecting…');
        return;
      }
      // The browser gave up (the server answered an error status): the page tries again.
      stream.close();
      source = null;
      scheduleReconnect();
    });
  });
}

/** Reconnects after a while, backing off, once the session is known to be good (signed
 * out, the page shows the sign-in link instead). */
function scheduleReconnect() {
  setLive('reconnecting', 'Reconnecting…');
  clearTimeout(reconnectTimer);
  const delay = reconnectDelay;
  reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
  reconnectTimer = setTimeout(async () => {
    let session;
    try {
      session = await call('auth/session');
    } catch (problem) {
      if (!(problem instanceof Problem)) throw problem;
      scheduleReconnect();
      return;
    }
    if (!session.signed_in) {
      showSignedOut();
      return;
    }
    showSeller(session);
    // Without an event applied yet, the new stream starts from now: the lists catch up.
    const caughtUp = lastEventId !== '';
    await connect();
    if (!caughtUp) await loadAll();
  }, delay);
}

function disconnect() {
  clearTimeout(reconnectTimer);
  if (source) source.close();
  source = null;
  setLive('offline', 'Offline');
}

function applyEvent(message) {
  const id = message.lastEventId;
  // Ids are in time order: one at or before the last applied was applied already.
  if (id && lastEventId && id <= lastEventId) return;
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    return;
  }
  if (id) lastEventId = id;
  const data = event.data || {};
  switch (event.type) {
    case 'question.new':
      upsertQuestion(data);
      renderQuestions();
      announce(`New question: ${data.text}`);
      refreshNotifications();
      break;
    case 'question.answered':
    case 'question.updated':
      upsertQuestion(data);
      renderQuestions();
      break;
    case 'message.new':
      messageArrived(data);
      if (data.direction === 'inbound') refreshNotifications();
      break;
    case 'conversation.read': {
      const conversation = conversations.get(`${data.channel}:${data.conversation_id}`);
      if (conversation) {
        conversations.set({ ...conversation, unread: 0 });
        renderConversations();
      }
      break;
    }
    case 'message.status':
      if (open && open.id === `${data.channel}:${data.conversation_id}`) {
        const shown = open.messages.get(data.message_id);
        if (shown) {
          open.messages.set({ ...shown, status: data.status });
          renderMessages();
        }
      }
      break;
    case 'order.updated':
      refreshNotifications();
      break;
    default:
      break;
  }
}

function messageArrived(message) {
  const id = `${message.channel}:${message.conversation_id}`;
  const conversation = conversations.get(id);
  if (!conversation) {
    refreshConversations();
  } else if (!conversation.last_message || conversation.last_message.id !== message.id) {
    const inbound = message.direction === 'inbound';
    conversations.set({
      ...conversation,
      updated_at_ms: Math.max(conversation.updated_at_ms || 0, message.at_ms),
      messages: (conversation.messages || 0) + 1,
      unread: (conversation.unread || 0) + (inbound ? 1 : 0),
      last_message: {
        id: message.id,
        direction: message.direction,
        text: message.text,
        at_ms: message.at_ms,
      },
    });
    renderConversations();
  }
  if (message.direction === 'inbound') {
    announce(`New ${CHANNELS[message.channel] || ''} message: ${message.text || message.kind}`);
  }
  if (open && open.id === id && !open.messages.get(message.id)) {
    open.messages.set(message);
    renderMessages();
    markRead(id).catch((problem) => {
      if (problem instanceof Problem) showPageError(problem);
    });
  }
}

// ------------------------------------------------------------------ tabs

const TABS = ['questions', 'conversations', 'notifications'];

function selectTab(name, focus) {
  for (const tab of TABS) {
    const selected = tab === name;
    const button = $(`tab-${tab}`);
    button.setAttribute('aria-selected', String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`panel-${tab}`).hidden = !selected;
  }
  if (focus) $(`tab-${name}`).focus();
}

function wireTabs() {
  TABS.forEach((name, index) => {
    const button = $(`tab-${name}`);
    button.addEventListener('click', () => selectTab(name, false));
    button.addEventListener('keydown', (event) => {
      const moves = {
        ArrowRight: (index + 1) % TABS.length,
        ArrowLeft: (index + TABS.length - 1) % TABS.length,
        Home: 0,
        End: TABS.length - 1,
      };
      if (!(event.key in moves)) return;
      event.preventDefault();
      selectTab(TABS[moves[event.key]], true);
    });
  });
}

// ------------------------------------------------------------------ the page

function showOnly(view) {
  $('loading').hidden = view !== 'loading';
  $('signed-out').hidden = view !== 'signed-out';
  $('inbox').hidden = view !== 'inbox';
  $('account').hidden = view !== 'inbox';
}

function showSignedOut() {
  disconnect();
  for (const list of [questions.unanswered, questions.answered, conversations, notifications]) list.clear();
  for (const nodes of [questionNodes, conversationNodes, notificationNodes]) nodes.clear();
  for (const id of ['unanswered', 'answered', 'conversations', 'notifications', 'messages']) $(id).replaceChildren();
  open = null;
  unreadNotifications = 0;
  lastEventId = '';
  showOnly('signed-out');
}

function showSeller(me) {
  const user = me.user || {};
  $('seller-name').textContent = user.nickname || (user.seller_id ? `Seller ${user.seller_id}` : user.id);
  const grant = $('grant');
  const needsReconnect = me.grant.status !== 'ok';
  grant.dataset.status = me.grant.status;
  grant.textContent = needsReconnect ? 'Mercado Livre: sign in again' : 'Mercado Livre connected';
  $('reconnect').hidden = !needsReconnect;
}

async function loadAll() {
  const loads = [
    questions.unanswered.loadFirst(),
    questions.answered.loadFirst(),
    conversations.loadFirst(),
    notifications.loadFirst().then((page) => {
      unreadNotifications = page.unread_count;
    }),
  ];
  const results = await Promise.allSettled(loads);
  renderQuestions();
  renderConversations();
  renderNotifications();
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) {
    if (failed.reason instanceof Problem) showPageError(failed.reason);
    else throw failed.reason;
  }
}

function wireLoadMore(buttonId, list, render) {
  $(buttonId).addEventListener('click', (event) =>
    busy(event.currentTarget, async () => {
      await list().loadMore();
      render();
    }));
}

async function signOut(button) {
  await busy(button, async () => {
    await call('auth/logout', { method: 'POST' });
    showSignedOut();
    $('sign-in').focus();
  });
}

async function start() {
  onUnauthorized = () => {
    if ($('signed-out').hidden) showSignedOut();
  };
  wireTabs();
  wireLoadMore('unanswered-more', () => questions.unanswered, renderQuestions);
  wireLoadMore('answered-more', () => questions.answered, renderQuestions);
  wireLoadMore('conversations-more', () => conversations, renderConversations);
  wireLoadMore('notifications-more', () => notifications, renderNotifications);
  wireLoadMore('messages-more', () => open.messages, renderMessages);
  $('conversation-back').addEventListener('click', closeConversation);
  $('sign-out').addEventListener('click', (event) => signOut(event.currentTarget));

  let session;
  try {
    session = await call('auth/session');
  } catch (problem) {
    if (!(problem instanceof Problem)) throw problem;
    showOnly('loading');
    $('loading').textContent = `The inbox could not be loaded. ${problem.text}`;
    return;
  }
  if (!session.signed_in) {
    showSignedOut();
    return;
  }
  showSeller(session);
  showOnly('inbox');
  // The stream first: whatever happens after it opened arrives as an event, whatever
  // happened before is in the lists (shown once either way).
  await connect();
  await loadAll();
}

start();
