/* Kryten Likes dashboard.
 *
 * Everything here is built with createElement/textContent: titles and
 * usernames come from untrusted viewers, and the CSP forbids inline code
 * and styles, so no HTML strings and no inline style writes anywhere.
 */
(() => {
  'use strict';

  const TOP_LIMIT = 10;
  const TOP_REFRESH_MS = 30 * 1000;
  const TOP_AFTER_EVENT_MS = 1500;
  const ACTIVITY_REFRESH_MS = 5 * 60 * 1000;
  const LATEST_MAX = 20;
  const STREAM_RETRY_MS = 5000;

  const byId = (id) => document.getElementById(id);
  // The HTML parser already put #activity-svg in the SVG namespace; borrow
  // its namespaceURI rather than hard-coding the URI.
  const svgNamespace = byId('activity-svg').namespaceURI;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(svgNamespace, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function formatTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return '';
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  // One line combines the stream state with the latest error of each data
  // source, so a failing endpoint is visible without drowning the page.
  const statusLine = {
    node: byId('status'),
    stream: 'connecting…',
    live: false,
    errors: new Map(),
    setStream(text, live) { this.stream = text; this.live = live; this.render(); },
    fail(source, message) { this.errors.set(source, message); this.render(); },
    ok(source) { if (this.errors.delete(source)) this.render(); },
    render() {
      const parts = [this.stream];
      for (const [source, message] of this.errors) parts.push(`${source}: ${message}`);
      this.node.textContent = parts.join(' · ');
      this.node.className = this.live && this.errors.size === 0 ? 'status live' : 'status trouble';
    },
  };

  // Never throws: an API failure becomes a status message and a null result,
  // so one broken endpoint cannot stop the rest of the page from loading.
  async function getJson(source, path) {
    try {
      const response = await fetch(path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
      let body = null;
      try { body = await response.json(); } catch (_) { body = null; }
      if (!response.ok) {
        const word = (body && body.error) || `HTTP ${response.status}`;
        statusLine.fail(source, body && body.detail ? `${word} (${body.detail})` : word);
        return null;
      }
      statusLine.ok(source);
      return body;
    } catch (_) {
      statusLine.fail(source, 'network error');
      return null;
    }
  }

  const nowPlaying = {
    titleNode: byId('now-title'),
    likesNode: byId('now-likes'),
    videoId: null,
    // Bumped whenever the count is set, so a slow item fetch cannot
    // overwrite a fresher count that arrived over the stream meanwhile.
    countVersion: 0,
    // Bumped by every show(), so the initial GET cannot overwrite a newer
    // now_playing announcement that overtook it on the stream.
    showCount: 0,
    setLikes(count) {
      this.countVersion += 1;
      this.likesNode.textContent = String(Number(count) || 0);
    },
    async show(np) {
      this.showCount += 1;
      const previous = this.videoId;
      this.videoId = (np && np.video_id) || null;
      this.titleNode.textContent = this.videoId ? (np.title || this.videoId) : 'Nothing is playing';
      // Keep the count on a repeated announcement of the same video; a stale
      // count from the previous video would be wrong, so zero it then.
      if (this.videoId !== previous || !this.videoId) this.setLikes(0);
      if (!this.videoId) return;
      const videoId = this.videoId;
      const version = this.countVersion;
      const item = await getJson('item', `/api/v1/items/${encodeURIComponent(videoId)}`);
      if (item && videoId === this.videoId && version === this.countVersion) this.setLikes(item.like_count);
    },
    async load() {
      const before = this.showCount;
      const np = await getJson('now playing', '/api/v1/now-playing');
      if (np && before === this.showCount) await this.show(np);
    },
    onLikeEvent(event) {
      if (this.videoId && event.video_id === this.videoId) this.setLikes(event.like_count);
    },
  };

  const topLists = {
    window: 'all',
    switchNode: byId('window-switch'),
    pendingRefresh: null,
    renderEntries(listNode, items, describe) {
      const rows = (Array.isArray(items) ? items : []).map((item) => {
        const li = el('li');
        for (const [className, text] of describe(item)) li.append(el('span', className, text));
        return li;
      });
      listNode.replaceChildren(...rows);
    },
    async load() {
      const chosen = this.window;
      const query = `window=${encodeURIComponent(chosen)}&limit=${TOP_LIMIT}`;
      const [liked, played, curators] = await Promise.all([
        getJson('top liked', `/api/v1/top/liked?${query}`),
        getJson('top played', `/api/v1/top/played?${query}`),
        getJson('curators', `/api/v1/top/curators?${query}`),
      ]);
      // The user may have switched windows while this was in flight; the
      // newer request will render, so drop these stale answers.
      if (chosen !== this.window) return;
      const video = (unit) => (item) => [
        ['title', item.title || item.video_id], ['count', item.count ?? 0], ['unit', unit]];
      if (liked) this.renderEntries(byId('top-liked'), liked.items, video('likes'));
      if (played) this.renderEntries(byId('top-played'), played.items, video('plays'));
      if (curators) {
        this.renderEntries(byId('top-curators'), curators.items, (item) => [
          ['title', item.username], ['count', item.likes_received ?? 0], ['unit', 'likes'],
          ['extra', `· ${item.plays ?? 0} plays`]]);
      }
    },
    // Not a trailing debounce: a steady stream of events must not postpone
    // the refresh forever, so the first event of a burst fixes the time.
    // Jittered: every open page hears the same events at the same moment;
    // their refreshes should not reach the daemon at the same moment too.
    refreshSoon() {
      if (this.pendingRefresh) return;
      this.pendingRefresh = setTimeout(() => {
        this.pendingRefresh = null;
        this.load();
      }, TOP_AFTER_EVENT_MS + Math.random() * TOP_AFTER_EVENT_MS);
    },
    select(chosen) {
      if (chosen === this.window) return;
      this.window = chosen;
      for (const button of this.switchNode.querySelectorAll('button[data-window]')) {
        button.setAttribute('aria-pressed', String(button.dataset.window === chosen));
      }
      this.load();
    },
    start() {
      this.switchNode.addEventListener('click', (event) => {
        const button = event.target.closest('button[data-window]');
        if (button) this.select(button.dataset.window);
      });
      setInterval(() => this.load(), TOP_REFRESH_MS);
    },
  };

  const latestLikes = {
    listNode: byId('latest'),
    emptyNode: byId('latest-empty'),
    add(event, kind) {
      const li = el('li', kind);
      const time = el('time', null, formatTime(event.at));
      if (event.at) time.setAttribute('datetime', event.at);
      li.append(
        time,
        el('span', 'user', event.username || event.user || 'someone'),
        el('span', 'verb', kind === 'unlike' ? ' unliked ' : ' liked '),
        el('span', 'title', event.title || event.video_id || 'something'),
      );
      this.listNode.prepend(li);
      while (this.listNode.children.length > LATEST_MAX) this.listNode.lastElementChild.remove();
      this.emptyNode.hidden = this.listNode.children.length > 0;
    },
  };

  const activityChart = {
    container: byId('chart'),
    svg: byId('activity-svg'),
    hours: [],
    drawQueued: false,
    async load() {
      const data = await getJson('activity', '/api/v1/activity');
      if (data && Array.isArray(data.hours)) {
        this.hours = data.hours.map((h) => ({ hour: h.hour, likes: Number(h.likes) || 0, plays: Number(h.plays) || 0 }));
        this.draw();
      } else if (!this.svg.firstChild) {
        this.draw(); // empty axes beat a blank box when the endpoint fails
      }
    },
    // Hour keys look like "2026-12-02T21" (UTC), matching toISOString's prefix.
    hourKey(iso) {
      const date = iso ? new Date(iso) : new Date();
      return Number.isNaN(date.getTime()) ? null : date.toISOString().slice(0, 13);
    },
    // The page may stay open across an hour boundary: slide the 7-day window
    // forward instead of piling new events onto a stale "current" hour.
    advanceTo(key) {
      for (let guard = 0; guard < 168; guard += 1) {
        const last = this.hours[this.hours.length - 1];
        if (!last || last.hour >= key) return;
        const next = new Date(Date.parse(`${last.hour}:00:00Z`) + 3600 * 1000);
        this.hours.push({ hour: next.toISOString().slice(0, 13), likes: 0, plays: 0 });
        this.hours.shift();
      }
    },
    onEvent(event, kind) {
      if (this.hours.length === 0) return;
      const key = this.hourKey(event.at);
      if (!key) return;
      this.advanceTo(key);
      const bucket = this.hours.find((h) => h.hour === key);
      if (!bucket) return;
      if (kind === 'like') bucket.likes += 1;
      else if (kind === 'unlike') bucket.likes = Math.max(0, bucket.likes - 1);
      else if (kind === 'play') bucket.plays += 1;
      this.drawSoon();
    },
    drawSoon() {
      if (this.drawQueued) return;
      this.drawQueued = true;
      requestAnimationFrame(() => { this.drawQueued = false; this.draw(); });
    },
    // The viewBox follows the container's real width so 11px labels stay
    // legible on a phone instead of being scaled down with the drawing.
    draw() {
      const hours = this.hours;
      const width = Math.max(300, Math.min(1600, Math.round(this.container.clientWidth) || 700));
      const height = 220;
      const left = 34, right = width - 6, top = 26, bottom = height - 24;
      const max = Math.max(1, ...hours.map((h) => Math.max(h.likes, h.plays)));
      const step = hours.length ? (right - left) / hours.length : 0;
      const yOf = (v) => bottom - (v / max) * (bottom - top);
      const totalLikes = hours.reduce((sum, h) => sum + h.likes, 0);
      const totalPlays = hours.reduce((sum, h) => sum + h.plays, 0);
      const summary = `Likes and plays per hour over the last 7 days: ${totalLikes} likes, ${totalPlays} plays, busiest hour ${max}.`;

      const svg = this.svg;
      svg.replaceChildren(svgEl('title', {}, summary));
      svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
      svg.setAttribute('aria-label', summary);

      const narrow = width < 480;
      hours.forEach((h, i) => {
        const x = left + i * step;
        if (!h.hour.endsWith('T00') || x > right - 24) return;
        const day = new Date(`${h.hour}:00:00Z`);
        const label = day.toLocaleDateString([], narrow ? { weekday: 'short', timeZone: 'UTC' }
          : { weekday: 'short', day: 'numeric', timeZone: 'UTC' });
        svg.append(svgEl('line', { class: 'day-line', x1: x, x2: x, y1: top, y2: bottom }));
        svg.append(svgEl('text', { class: 'label', x: x + 2, y: height - 8 }, label));
      });

      hours.forEach((h, i) => {
        if (h.likes <= 0) return;
        const y = yOf(h.likes);
        svg.append(svgEl('rect', { class: 'bar-likes', x: left + i * step, y, width: Math.max(step - 0.5, 0.5), height: bottom - y }));
      });
      const points = hours.map((h, i) => `${(left + (i + 0.5) * step).toFixed(1)},${yOf(h.plays).toFixed(1)}`);
      if (points.length) svg.append(svgEl('polyline', { class: 'line-plays', points: points.join(' ') }));

      svg.append(svgEl('line', { class: 'axis', x1: left, x2: right, y1: bottom, y2: bottom }));
      svg.append(svgEl('line', { class: 'axis', x1: left, x2: left, y1: top, y2: bottom }));
      svg.append(svgEl('text', { class: 'label', x: left - 4, y: top + 4, 'text-anchor': 'end' }, max));
      svg.append(svgEl('text', { class: 'label', x: left - 4, y: bottom, 'text-anchor': 'end' }, 0));

      svg.append(svgEl('rect', { class: 'legend-likes', x: left, y: 6, width: 10, height: 10 }));
      svg.append(svgEl('text', { class: 'label', x: left + 14, y: 15 }, 'likes'));
      svg.append(svgEl('line', { class: 'legend-plays', x1: left + 56, x2: left + 70, y1: 11, y2: 11 }));
      svg.append(svgEl('text', { class: 'label', x: left + 74, y: 15 }, 'plays'));

      // Invisible full-height columns give each hour a hover tooltip, since
      // the bars themselves are too thin (or absent) to point at.
      hours.forEach((h, i) => {
        const hit = svgEl('rect', { class: 'hit', x: left + i * step, y: top, width: step, height: bottom - top });
        hit.append(svgEl('title', {}, `${h.hour.replace('T', ' ')}:00 UTC: ${h.likes} likes, ${h.plays} plays`));
        svg.append(hit);
      });
    },
    start() {
      setInterval(() => this.load(), ACTIVITY_REFRESH_MS);
      window.addEventListener('resize', () => this.drawSoon());
    },
  };

  // A malformed message is dropped rather than allowed to break the handlers.
  function parseEvent(message) {
    try { const data = JSON.parse(message.data); return data && typeof data === 'object' ? data : null; } catch (_) { return null; }
  }

  // EventSource retries by itself after network errors, but gives up for
  // good on a bad HTTP answer (readyState CLOSED); reopen it ourselves then.
  // After a gap (a reconnect) what plays and the lists may have moved on:
  // they are read again. A refused stream (503: too many, or a standby) is
  // tried again later and later.
  let streamOpened = false;
  let retryMs = STREAM_RETRY_MS;
  function connectStream() {
    const stream = new EventSource('/api/v1/stream');
    stream.addEventListener('open', () => {
      statusLine.setStream('live', true);
      retryMs = STREAM_RETRY_MS;
      if (streamOpened) { nowPlaying.load(); topLists.load(); activityChart.load(); }
      streamOpened = true;
    });
    stream.addEventListener('error', () => {
      if (stream.readyState === EventSource.CLOSED) {
        statusLine.setStream('disconnected, retrying…', false);
        stream.close();
        setTimeout(connectStream, retryMs);
        retryMs = Math.min(retryMs * 2, 60000);
      } else {
        statusLine.setStream('reconnecting…', false);
      }
    });
    for (const kind of ['like', 'unlike']) {
      stream.addEventListener(kind, (message) => {
        const event = parseEvent(message);
        if (!event) return;
        nowPlaying.onLikeEvent(event);
        latestLikes.add(event, kind);
        activityChart.onEvent(event, kind);
        topLists.refreshSoon();
      });
    }
    stream.addEventListener('play', (message) => {
      const event = parseEvent(message);
      if (event) { activityChart.onEvent(event, 'play'); topLists.refreshSoon(); }
    });
    stream.addEventListener('now_playing', (message) => {
      const np = parseEvent(message);
      if (np) nowPlaying.show(np);
    });
  }

  async function start() {
    statusLine.render();
    topLists.start();
    activityChart.start();
    // Open the stream first so nothing that happens during the initial
    // fetches is missed; handlers cope with data that is not loaded yet.
    connectStream();
    await Promise.allSettled([nowPlaying.load(), topLists.load(), activityChart.load()]);
    document.body.dataset.ready = '1';
  }

  start();
})();
