"use strict";
// Boots the live page (live.html): the lab's UI (lab_ui.js) talking to the local server
// (gptdecoder/live/server.py) over fetch. Every request carries the token the page was
// opened with; nothing is fetched from anywhere else.
const token = new URLSearchParams(window.location.search).get("token") || "";

// One JSON request; a 4xx/5xx answer's one-line message becomes an Error.
async function askServer(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: { "X-Lab-Token": token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

startLab(document.getElementById("lab"), {
  info: () => askServer("/api/info"),
  analyse: (body) => askServer("/api/analyse", body),
  generate: (body) => askServer("/api/generate", body),
});
