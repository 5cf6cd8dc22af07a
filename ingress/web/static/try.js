// The buyer's page: one sale, a Buy button, and the ticket followed through
// its event stream (EventSource) until it leaves the line. The page keeps
// what it showed in data attributes of #buyer (data-status, data-positions:
// every place shown, in order; data-events), for people and tests alike.
(function () {
  'use strict';
  var root = document.getElementById('buyer');
  var sale = root.dataset.sale;
  var api = '/api/v1';
  var $ = function (id) { return document.getElementById(id); };
  var positions = [];
  var events = 0;
  var stream = null;
  var payBy = null;

  function text(id, v) { $(id).textContent = v; }
  function message(m) { text('msg', m || ''); }

  function money(cents) { return (cents / 100).toFixed(2); }

  function loadSale() {
    fetch(api + '/sales/' + encodeURIComponent(sale), { credentials: 'same-origin' })
      .then(function (r) { return r.json().then(function (b) { return { r: r, b: b }; }); })
      .then(function (x) {
        if (!x.r.ok) { message(x.b.error ? x.b.error.message : 'the sale cannot be read'); return; }
        var s = x.b;
        root.dataset.state = s.state;
        text('name', s.name || s.id);
        text('sale-line', s.state.split('_').join(' ') + ' · until ' + new Date(s.ends_at).toLocaleString());
        text('price', money(s.price_cents));
        text('left', s.stock ? String(s.stock.available) : '–');
        $('buy').disabled = !(s.state === 'open' || s.state === 'waiting_room_open') || stream !== null;
      })
      .catch(function () { message('the sale cannot be read; retrying'); setTimeout(loadSale, 2000); });
  }

  function buy() {
    $('buy').disabled = true;
    message('');
    fetch(api + '/sales/' + encodeURIComponent(sale) + '/purchase', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ quantity: 1 })
    })
      .then(function (r) { return r.json().then(function (b) { return { r: r, b: b }; }); })
      .then(function (x) {
        if (x.r.status === 200 || x.r.status === 202) { follow(x.b.ticket_id); return; }
        var retry = x.r.headers.get('Retry-After');
        message((x.b.error ? x.b.error.message : 'the purchase failed') + (retry ? ' (try again in ' + retry + ' s)' : ''));
        $('buy').disabled = x.r.status === 409 && x.b.error && x.b.error.code !== 'not_started' ? true : false;
      })
      .catch(function () { message('the purchase did not go through; try again'); $('buy').disabled = false; });
  }

  function follow(id) {
    $('ticket').hidden = false;
    text('ticket-id', id);
    text('headline', 'Your purchase is in line…');
    stream = new EventSource(api + '/tickets/' + encodeURIComponent(id) + '/events');
    stream.addEventListener('ticket', function (e) { show(JSON.parse(e.data)); });
    // EventSource reconnects by itself (with Last-Event-ID) when the
    // connection drops; the stream sends the current state at once.
    stream.onerror = function () { if (stream.readyState !== EventSource.CLOSED) { message('reconnecting…'); } };
    stream.onopen = function () { message(''); };
  }

  function show(t) {
    events++;
    root.dataset.events = String(events);
    root.dataset.status = t.status;
    root.className = 'status-' + t.status;
    text('status', t.status.split('_').join(' '));
    if (t.status === 'queued' || t.status === 'waiting') {
      if (t.position != null) {
        positions.push(t.position);
        root.dataset.positions = positions.join(',');
        text('position', String(t.position));
        text('headline', t.position === 1 ? 'You are next.' : 'You are number ' + t.position + ' in line.');
      } else {
        text('position', '–');
      }
      text('eta', t.eta_seconds == null ? '–' : (t.eta_seconds <= 1 ? 'any moment' : '~' + t.eta_seconds + ' s'));
      return;
    }
    // The ticket left the line: the stream ends here.
    stream.close();
    loadSale();
    text('position', '–');
    text('eta', '–');
    if (t.order_id) { text('order-id', t.order_id); }
    var heads = {
      pending_payment: 'Reserved! Pay before the time below.',
      paid: 'Paid. Thank you!',
      sold_out: 'Sold out: every unit went before your turn.',
      failed: 'Your purchase could not be completed.',
      expired: 'Your order expired unpaid.',
      cancelled: 'Cancelled.'
    };
    text('headline', heads[t.status] || t.status);
    if (t.pay_by) {
      payBy = new Date(t.pay_by);
      tick();
      setInterval(tick, 1000);
    }
  }

  function tick() {
    var left = Math.max(0, Math.round((payBy - Date.now()) / 1000));
    text('pay-by', payBy.toLocaleTimeString() + ' (' + Math.floor(left / 60) + ' min ' + (left % 60) + ' s left)');
  }

  $('buy').addEventListener('click', buy);
  loadSale();
})();
