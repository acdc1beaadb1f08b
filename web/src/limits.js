// Always-visible limits: requests and tokens left (and money, where the server has a budget
// in it), with their reset times, from the `limits` of every ack and done and from usage.get.
import { $, h, untilText } from "./ui.js";

const LABELS = { requests: "requests", tokens: "tokens", cost: "budget" };

export class Limits {
  constructor({ conn }) {
    this.conn = conn;
    this.current = null;
    this.timer = setInterval(() => this.current && this.render(), 15_000); // the "resets in" texts
  }

  async load() {
    try {
      const report = await this.conn.request("usage.get");
      this.update(report.limits);
    } catch {
      // the bar stays as it was; the next ack or done brings the limits anyway
    }
  }

  update(limits) {
    if (!limits) return;
    this.current = limits;
    this.render();
  }

  render() {
    const box = $("limits");
    box.hidden = false;
    box.replaceChildren(...Object.entries(LABELS).filter(([key]) => this.current[key]).map(([key, label]) => {
      const limit = this.current[key];
      const money = key === "cost";
      const show = (value) => (money ? `$${Number(value).toFixed(2)}` : Number(value).toLocaleString());
      const left = Math.max(0, limit.remaining);
      const low = limit.limit > 0 && left / limit.limit < 0.1;
      return h("span", { class: `limit${low ? " low" : ""}`, dataset: { limit: key },
        title: `${show(left)} of ${show(limit.limit)} ${label} left; resets at ${new Date(limit.resetAt * 1000).toLocaleTimeString()}` },
      h("meter", { min: 0, max: limit.limit || 1, value: left, low: (limit.limit || 1) * 0.1, optimum: limit.limit || 1,
        "aria-label": `${label} left` }),
      h("span", { class: "limit-text" }, `${show(left)} ${label}`),
      h("span", { class: "reset" }, ` · resets ${untilText(limit.resetAt)}`));
    }));
  }
}
