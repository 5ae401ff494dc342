(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('ptemu-data').textContent);
  var $ = function (id) { return document.getElementById(id); };
  var store = $('store'), left = $('left'), right = $('right'), view = $('view');
  var st = { f: 0, e: 0, e2: 0, s: 0, cmp: false };

  function eras() { return data.files[st.f].eras; }
  function eraIndex(f, name) {
    var es = data.files[f].eras;
    for (var i = 0; i < es.length; i++) { if (es[i].name === name) return i; }
    return -1;
  }
  function defaultLeft(f) { var i = eraIndex(f, data.left); return i < 0 ? 0 : i; }
  function defaultRight(f, e) {
    var i = eraIndex(f, data.right);
    var n = data.files[f].eras.length;
    return (i < 0 || i === e) ? (e + 1) % n : i;
  }
  function maxStep() {
    var es = eras(), m = es[st.e].steps - 1;
    if (st.cmp) m = Math.max(m, es[st.e2].steps - 1);
    return Math.max(m, 0);
  }
  function parseHash() {
    var h = new URLSearchParams(location.hash.slice(1));
    var f = 0;
    for (var i = 0; i < data.files.length; i++) { if (data.files[i].key === h.get('file')) f = i; }
    st.f = f;
    var e = eraIndex(f, h.get('era'));
    st.e = e < 0 ? defaultLeft(f) : e;
    var e2 = h.get('vs') ? eraIndex(f, h.get('vs')) : -1;
    st.cmp = e2 >= 0 && data.files[f].eras.length > 1;
    st.e2 = e2 >= 0 ? e2 : defaultRight(f, st.e);
    var s = parseInt(h.get('step') || '0', 10);
    st.s = isNaN(s) || s < 0 ? 0 : Math.min(s, maxStep());
  }
  function hash() {
    var es = eras();
    var h = 'file=' + encodeURIComponent(data.files[st.f].key) + '&era=' + encodeURIComponent(es[st.e].name);
    if (st.cmp) h += '&vs=' + encodeURIComponent(es[st.e2].name);
    return '#' + h + '&step=' + st.s;
  }
  function fill(sel, items, cur) {
    sel.textContent = '';
    items.forEach(function (t, i) {
      var o = document.createElement('option');
      o.value = String(i); o.textContent = t; if (i === cur) o.selected = true;
      sel.appendChild(o);
    });
  }
  function opLabel(s) {
    var es = eras(), e = es[st.e];
    if (s === 0) return 'start';
    var ops = e.ops.length >= s ? e.ops : (st.cmp ? es[st.e2].ops : e.ops);
    return ops[s - 1] || ('step ' + s);
  }
  function buildTimeline() {
    var tl = $('timeline');
    tl.textContent = '';
    var e = eras()[st.e];
    for (var s = 0; s <= maxStep(); s++) {
      var b = document.createElement('button');
      b.type = 'button';
      b.dataset.step = String(s);
      b.textContent = s + ' ' + opLabel(s).replace(/^L\d+ /, '');
      b.title = opLabel(s);
      if (e.failed.indexOf(s) >= 0) b.className = 'bad';
      var fr = frame(st.f, st.e, s);
      if (fr && fr.querySelector('.checks li.viol')) b.classList.add('viol');
      b.addEventListener('click', (function (n) { return function () { go(n); }; })(s));
      tl.appendChild(b);
    }
  }
  function frame(f, e, s) { return document.getElementById('f' + f + 'e' + e + 's' + s); }
  function clear(pane) {
    while (pane.firstChild) {
      var c = pane.firstChild;
      if (c.classList && c.classList.contains('frame')) store.appendChild(c); else pane.removeChild(c);
    }
  }
  function place(pane, e) {
    var era = eras()[e];
    var s = Math.min(st.s, era.steps - 1);
    if (st.s > era.steps - 1) {
      var note = document.createElement('div');
      note.className = 'pane-note';
      note.textContent = era.name + ' has no step ' + st.s + ': its run ' +
        (era.stopped ? 'stopped at ' + era.stopped : 'ended') + '; showing its last step, ' + s + '.';
      pane.appendChild(note);
    }
    var fr = frame(st.f, e, s);
    if (fr) pane.appendChild(fr);
  }
  function show() {
    clear(left); clear(right);
    place(left, st.e);
    if (st.cmp) { place(right, st.e2); right.hidden = false; view.className = 'two'; }
    else { right.hidden = true; view.className = ''; }
    $('pos').textContent = 'step ' + st.s + ' / ' + maxStep();
    $('prev').disabled = $('first').disabled = st.s === 0;
    $('next').disabled = $('last').disabled = st.s >= maxStep();
    $('cmp').checked = st.cmp;
    $('era2').disabled = !st.cmp;
    var bs = $('timeline').querySelectorAll('button');
    for (var i = 0; i < bs.length; i++) bs[i].classList.toggle('on', i === st.s);
    var h = hash();
    if (location.hash !== h) history.replaceState(null, '', h);
    document.title = 'ptemu: ' + data.files[st.f].file + ' [' + eras()[st.e].name +
      (st.cmp ? ' | ' + eras()[st.e2].name : '') + '] step ' + st.s;
  }
  function build() {
    fill($('file'), data.files.map(function (f) { return f.file; }), st.f);
    var names = eras().map(function (e) { return e.name + (e.passed ? '' : ' (fails)'); });
    fill($('era'), names, st.e);
    fill($('era2'), names, st.e2);
    $('cmp').disabled = eras().length < 2;
    buildTimeline();
  }
  function go(s) {
    st.s = Math.max(0, Math.min(s, maxStep()));
    show();
  }
  $('first').addEventListener('click', function () { go(0); });
  $('prev').addEventListener('click', function () { go(st.s - 1); });
  $('next').addEventListener('click', function () { go(st.s + 1); });
  $('last').addEventListener('click', function () { go(maxStep()); });
  $('file').addEventListener('change', function (ev) {
    st.f = parseInt(ev.target.value, 10);
    st.e = defaultLeft(st.f); st.e2 = defaultRight(st.f, st.e);
    st.cmp = st.cmp && eras().length > 1;
    st.s = Math.min(st.s, maxStep());
    build(); show();
  });
  $('era').addEventListener('change', function (ev) {
    st.e = parseInt(ev.target.value, 10);
    st.s = Math.min(st.s, maxStep());
    build(); show();
  });
  $('era2').addEventListener('change', function (ev) {
    st.e2 = parseInt(ev.target.value, 10);
    build(); show();
  });
  $('cmp').addEventListener('change', function (ev) {
    st.cmp = ev.target.checked;
    if (st.cmp && st.e2 === st.e) st.e2 = defaultRight(st.f, st.e);
    build(); show();
  });
  document.addEventListener('keydown', function (ev) {
    var t = ev.target && ev.target.tagName;
    if (t === 'SELECT' || t === 'INPUT' || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    var k = ev.key;
    if (k === 'ArrowRight' || k === 'j' || k === 'n') { go(st.s + 1); ev.preventDefault(); }
    else if (k === 'ArrowLeft' || k === 'k' || k === 'p') { go(st.s - 1); ev.preventDefault(); }
    else if (k === 'Home') { go(0); ev.preventDefault(); }
    else if (k === 'End') { go(maxStep()); ev.preventDefault(); }
  });
  window.addEventListener('hashchange', function () { parseHash(); build(); show(); });
  parseHash(); build(); show();
})();
