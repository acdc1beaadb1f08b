// Builds dist/ (the page, its script and style, and lazily loaded chunks) with esbuild.
// Run by `python -m infra.web_bundle` (and so by `make dev` / `make test`), never by hand.
import * as esbuild from "esbuild";
import { copyFile, mkdir, rm, writeFile } from "node:fs/promises";

await rm("dist", { recursive: true, force: true });
await mkdir("dist", { recursive: true });
const result = await esbuild.build({
  entryPoints: { app: "src/main.js", style: "src/style.css" },
  bundle: true,
  minify: true,
  format: "esm",
  splitting: true, // the code viewer, the diff view and the highlighter load when first needed
  chunkNames: "chunk-[hash]",
  outdir: "dist",
  target: ["chrome111", "firefox115", "safari16.4"],
  define: { global: "globalThis" }, // amazon-cognito-identity-js's dependencies expect Node's `global`
  legalComments: "linked",
  metafile: true,
  logLevel: "warning",
});
await copyFile("index.html", "dist/index.html");
await writeFile("dist/.metafile.json", JSON.stringify(result.metafile));
