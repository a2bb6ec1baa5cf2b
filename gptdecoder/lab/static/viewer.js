"use strict";
// Boots the offline viewer (viewer.html): its weights are embedded in the page as one JSON
// block (a script element of type application/json, which the browser does not run), so the
// file opens from disk with no network and no fetch. attention_views.js, inlined before this
// script, defines drawAttentionViews.
//
// data, T and boundary stay page globals, as they were before the drawing code moved into
// attention_views.js: the screenshot command (tests/browser_helpers.py) reads T and boundary.
const data = JSON.parse(document.getElementById("attention-data").textContent);
const T = data.tokens.length, boundary = data.boundary;
drawAttentionViews(document.body, data);
