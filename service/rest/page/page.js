// The demo page: four forms that call this server's task endpoints and show the answers.
// Everything a user typed is shown back through textContent, never parsed as HTML.
"use strict";

// The Keras tokenizer the text models were trained with: these characters and spaces split
// words; only A–Z are lower-cased. Matching it is what lets the page colour the words sent.
const SEPARATORS = /([!"#$%&()*+,\-./:;<=>?@[\\\]^_`{|}~\t\n ]+)/;

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function bar(fraction, label) {
  const fill = el("span");
  fill.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  return el("span", { class: "bar", role: "img", "aria-label": label }, fill);
}

async function call(url, init) {
  const started = performance.now();
  const response = await fetch(url, init);
  let body;
  try {
    body = await response.json();
  } catch {
    body = { error: `the server answered ${response.status} without JSON` };
  }
  const ms = performance.now() - started;
  if (!response.ok) throw new Error(`${response.status}: ${body.error || "request failed"}`);
  return { body, ms };
}

function postJSON(url, payload) {
  return call(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
}

function meta(body, ms) {
  return el("p", {
    class: "meta",
    text: `${body.model} · version ${body.version} · ${Math.round(ms)} ms round trip`,
  });
}

function showError(output, error) {
  output.replaceChildren(el("p", { class: "error", role: "alert", text: String(error.message || error) }));
}

// The text as sent, each explained word tinted by its weight (green up, red down).
function colouredText(text, explanation) {
  const weights = new Map(explanation.map((entry) => [entry.word, entry.weight]));
  const largest = Math.max(1e-9, ...explanation.map((entry) => Math.abs(entry.weight)));
  const paragraph = el("p", { class: "words" });
  for (const piece of text.split(SEPARATORS)) {
    if (!piece) continue;
    const key = piece.replace(/[A-Z]/g, (c) => c.toLowerCase());
    if (!weights.has(key)) {
      paragraph.append(document.createTextNode(piece));
      continue;
    }
    const weight = weights.get(key);
    const strength = Math.abs(weight) / largest;
    const span = el("span", {
      class: weight >= 0 ? "up" : "down",
      title: `${key}: weight ${weight >= 0 ? "+" : ""}${weight.toFixed(4)}`,
      text: piece,
    });
    span.style.setProperty("--strength", strength.toFixed(3));
    paragraph.append(span);
  }
  return paragraph;
}

function strongest(explanation, key, count = 5) {
  const up = explanation.filter((e) => e.weight > 0).slice(0, count).map((e) => e[key]);
  const down = explanation.filter((e) => e.weight < 0).slice(0, count).map((e) => e[key]);
  return el(
    "p",
    { class: "summary" },
    el("strong", { text: "Pushed up: " }),
    up.join(", ") || "nothing",
    el("br"),
    el("strong", { text: "Pushed down: " }),
    down.join(", ") || "nothing",
  );
}

const tasks = {
  async sentiment(form, output) {
    const text = form.elements.text.value;
    const { body, ms } = await postJSON("/v1/sentiment", { text, explain: true });
    const answer = body.predictions[0];
    output.replaceChildren(
      el("p", { class: `verdict ${answer.label}`, text: answer.label === "positive" ? "Positive" : "Negative" }),
      el("p", { class: "score" },
        `P(positive) = ${answer.score.toFixed(3)} `, bar(answer.score, `score ${answer.score.toFixed(3)}`)),
      colouredText(text, answer.explanation),
      strongest(answer.explanation, "word"),
      meta(body, ms),
    );
  },

  async topics(form, output) {
    const text = form.elements.text.value;
    const { body, ms } = await postJSON("/v1/topics", { text, top_k: 3, explain: true });
    const answer = body.predictions[0];
    const list = el("ol", { class: "ranked" });
    for (const topic of answer.topics) {
      list.append(el("li", {},
        el("span", { class: "name", text: topic.label }),
        bar(topic.probability, `${topic.label} ${topic.probability.toFixed(3)}`),
        el("span", { class: "value", text: topic.probability.toFixed(3) })));
    }
    output.replaceChildren(
      list,
      el("p", { class: "note", text: `Words that drove “${answer.topics[0].label}”:` }),
      colouredText(text, answer.explanation),
      strongest(answer.explanation, "word"),
      meta(body, ms),
    );
  },

  async digits(form, output) {
    const file = form.elements.file.files[0];
    let init;
    if (file && digitSource === "file") {
      const data = new FormData();
      data.append("file", file);
      init = { method: "POST", body: data };
    } else {
      if (!inked) throw new Error("Draw a digit in the box first, or choose an image.");
      const png = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
      init = { method: "POST", headers: { "Content-Type": "image/png" }, body: png };
    }
    const { body, ms } = await call("/v1/digits?include_image=true", init);
    const answer = body.predictions[0];
    const seen = el("canvas", { width: "28", height: "28", class: "seen",
      role: "img", "aria-label": "The 28 by 28 image the model saw" });
    const pixels = seen.getContext("2d").createImageData(28, 28);
    answer.image.flat().forEach((grey, i) => {
      pixels.data.set([grey, grey, grey, 255], i * 4);
    });
    seen.getContext("2d").putImageData(pixels, 0, 0);
    const list = el("ol", { class: "ranked digits-probabilities", start: "0" });
    answer.probabilities.forEach((p, digit) => {
      list.append(el("li", { class: digit === answer.digit ? "best" : "" },
        el("span", { class: "name", text: String(digit) }),
        bar(p, `${digit}: ${p.toFixed(3)}`),
        el("span", { class: "value", text: p.toFixed(3) })));
    });
    output.replaceChildren(
      el("div", { class: "digit-answer" },
        el("p", { class: "digit", text: String(answer.digit) }),
        el("figure", {}, seen, el("figcaption", { text: "What the model saw (28×28)" }))),
      list,
      meta(body, ms),
    );
  },

  async housing(form, output) {
    const features = {};
    for (const input of form.querySelectorAll("input[name]")) {
      features[input.name] = input.value === "" ? null : Number(input.value);
    }
    const { body, ms } = await postJSON("/v1/housing", { features, explain: true });
    const answer = body.predictions[0];
    const dollars = Math.round(answer.price * 1000).toLocaleString("en-US");
    const largest = Math.max(1e-9, ...answer.explanation.map((e) => Math.abs(e.weight)));
    const list = el("ul", { class: "ranked" });
    for (const entry of answer.explanation.slice(0, 5)) {
      const sign = entry.weight >= 0 ? "+" : "−";
      list.append(el("li", { class: entry.weight >= 0 ? "up" : "down" },
        el("span", { class: "name", text: entry.feature }),
        bar(Math.abs(entry.weight) / largest, `${entry.feature} ${entry.weight.toFixed(2)}`),
        el("span", { class: "value", text: `${sign}$${Math.abs(entry.weight * 1000).toFixed(0)}` })));
    }
    output.replaceChildren(
      el("p", { class: "price", text: `$${dollars}` }),
      el("p", { class: "note", text: "Median value (in 1970s dollars). What moved it most, against an average house:" }),
      list,
      meta(body, ms),
    );
  },
};

// ------------------------------------------------------------------------- the drawing pad

const canvas = document.querySelector('form[data-task="digits"] canvas');
const digitsForm = canvas.closest("form");
const pen = canvas.getContext("2d");
let digitSource = "canvas";
let drawing = false;
let inked = false;

function clearCanvas() {
  inked = false;
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
}

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * canvas.width) / box.width,
    ((event.clientY - box.top) * canvas.height) / box.height,
  ];
}

canvas.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  if (digitSource === "file") {
    digitsForm.elements.file.value = "";
    digitSource = "canvas";
    clearCanvas();
  }
  drawing = true;
  inked = true;
  pen.lineWidth = 22;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.strokeStyle = "#111";
  pen.beginPath();
  pen.moveTo(...point(event));
  pen.lineTo(...point(event));
  pen.stroke();
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  pen.lineTo(...point(event));
  pen.stroke();
});
for (const type of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    digitsForm.requestSubmit();
  });
}


digitsForm.elements.file.addEventListener("change", () => {
  if (!digitsForm.elements.file.files.length) return;
  digitSource = "file";
  clearCanvas();
  digitsForm.requestSubmit();
});
digitsForm.querySelector("[data-clear]").addEventListener("click", () => {
  digitsForm.elements.file.value = "";
  digitSource = "canvas";
  clearCanvas();
  digitsForm.querySelector("[data-output]").replaceChildren();
});
clearCanvas();

// ------------------------------------------------------------------------- forms and models

for (const form of document.querySelectorAll("form[data-task]")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const output = form.querySelector("[data-output]");
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      await tasks[form.dataset.task](form, output);
    } catch (error) {
      showError(output, error);
    } finally {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
}

const METRIC_NAMES = {
  test_accuracy: "test accuracy",
  test_mae: "test MAE ($1000s)",
  kfold_mae: "K-fold MAE ($1000s)",
};

async function listModels() {
  const list = document.querySelector("[data-models-list]");
  try {
    const { body } = await call("/page/models", {});
    list.replaceChildren();
    for (const model of body.models) {
      const rows = el("dl", {});
      for (const [key, value] of Object.entries(model.metrics)) {
        const book = model.book[key];
        rows.append(
          el("dt", { text: METRIC_NAMES[key] || key }),
          el("dd", { text: `${value.toFixed(3)}${book === undefined ? "" : ` (book: ${book})`}` }),
        );
      }
      const card = el("article", { class: "model" },
        el("h3", { text: `${model.name} · version ${model.version}` }),
        el("p", { class: "note", text: model.task }),
        rows);
      if (model.rollout) {
        const r = model.rollout;
        const agreement = r.agreement === null ? "not measured yet"
          : `agreement ${(100 * r.agreement).toFixed(1)}% on ${r.compared}`;
        card.append(el("p", { class: "note", "data-rollout": r.mode,
          text: `Rollout: ${r.mode} of version ${r.candidate_version} (share ${r.share}), ${agreement}` }));
      }
      if (model.history) {
        card.append(el("img", { src: model.history, loading: "lazy", width: "880", height: "320",
          alt: `Training and validation curves of ${model.name} version ${model.version}` }));
      }
      list.append(card);
    }
  } catch (error) {
    showError(list, error);
  }
}
listModels();
