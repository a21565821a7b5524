// videolens pages: play a search result in place, and jump along a localization timeline.
// Plain JS, no build step. Everything works without it except in-page playback.
"use strict";

/** Seek `video` to `start` seconds (loading `src` first if needed), then play. */
function playAt(video, src, start) {
  const seek = () => { video.currentTime = start; };
  // play once the seek has landed, so playback starts at the moment, not before it
  video.addEventListener("seeked", () => { video.play().catch(() => {}); }, { once: true });
  if (src && video.getAttribute("src") !== src) {
    video.addEventListener("loadedmetadata", seek, { once: true });
    video.src = src;
    video.load();
  } else if (video.readyState >= 1) {
    seek();
  } else {
    video.addEventListener("loadedmetadata", seek, { once: true });
  }
}

function setupResults() {
  const results = document.getElementById("results");
  const panel = document.getElementById("player");
  if (!results || !panel) return;
  const video = document.getElementById("player-video");
  results.addEventListener("click", (event) => {
    const card = event.target.closest("a.result");
    // keep ctrl/cmd/shift-click and middle click: open the video page as a link
    if (!card || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    results.querySelectorAll(".active").forEach((el) => el.classList.remove("active"));
    card.classList.add("active");
    panel.hidden = false;
    const when = card.querySelector(".when");
    document.getElementById("player-caption").textContent =
      `${card.dataset.name} · ${when ? when.textContent : ""}`;
    document.getElementById("player-link").href = card.dataset.page;
    playAt(video, card.dataset.media, parseFloat(card.dataset.start));
    panel.scrollIntoView({ block: "start", behavior: "smooth" });
  });
}

function setupVideoPage() {
  const video = document.getElementById("main-video");
  if (!video) return;
  const start = parseFloat(video.dataset.start || "0");
  if (start > 0) {
    // a link from a search result: show that moment (no autoplay on page load)
    const seek = () => { video.currentTime = start; };
    if (video.readyState >= 1) seek(); else video.addEventListener("loadedmetadata", seek, { once: true });
  }
  const timeline = document.getElementById("timeline");
  if (!timeline) return;
  timeline.addEventListener("click", (event) => {
    const segment = event.target.closest(".segment");
    if (segment) playAt(video, null, parseFloat(segment.dataset.start));
  });
  const duration = parseFloat(timeline.dataset.duration) || 0;
  const heads = timeline.querySelectorAll(".playhead");
  video.addEventListener("timeupdate", () => {
    const total = duration || video.duration || 1;
    const left = `${Math.min(100, (100 * video.currentTime) / total)}%`;
    heads.forEach((head) => { head.style.left = left; });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupResults();
  setupVideoPage();
});
