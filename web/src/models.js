// The model picker, from models.list (protocol v1.1). A server without it answers BAD_REQUEST
// "unknown action": then there is no picker and chats use the server's default model.
import { $, h } from "./ui.js";
import { isUnknownAction } from "./connection.js";

const STORAGE_KEY = "llm-ide.model";

export class Models {
  constructor({ conn }) {
    this.conn = conn;
    this.models = [];
    $("model").addEventListener("change", (event) => localStorage.setItem(STORAGE_KEY, event.target.value));
  }

  async load() {
    try {
      const { models } = await this.conn.request("models.list");
      this.models = models;
    } catch (error) {
      this.models = [];
      if (!isUnknownAction(error)) console.warn("models.list failed:", error.message);
    }
    const select = $("model");
    $("model-label").hidden = this.models.length < 2;
    const saved = localStorage.getItem(STORAGE_KEY);
    select.replaceChildren(...this.models.map((model) => h("option", { value: model.id },
      model.price ? `${model.name} ($${model.price.input}/$${model.price.output} per M tokens)` : model.name)));
    const pick = this.models.find((m) => m.id === saved) || this.models.find((m) => m.default) || this.models[0];
    if (pick) select.value = pick.id;
  }

  /** The chosen model's id, or null for the server's default. */
  selected() {
    if (this.models.length < 2) return null;
    return $("model").value || null;
  }
}
