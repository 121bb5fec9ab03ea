// The extension's folders are its three contexts (background, content scripts, pages) and what
// they share; the imports keep to that: no context imports another's code, and no screen
// imports another screen or the shell (they open each other through their `Nav`).

import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "extension", "src");

/** Every TypeScript file under extension/src (but the generated types), with what it imports. */
async function imports() {
  const files = (await readdir(SRC, { recursive: true })).filter((f) => f.endsWith(".ts") && !f.startsWith("shared/generated/"));
  return Promise.all(
    files.map(async (file) => {
      const text = await readFile(path.join(SRC, file), "utf8");
      const specs = [...text.matchAll(/^(?:import|export)[^;]*?from\s+"([^"]+)"/gms)].map((m) => m[1]);
      const local = specs.filter((s) => s.startsWith(".")).map((s) => path.join(path.dirname(file), s).replace(/\.js$/, ""));
      return { file, local };
    }),
  );
}

test("no context imports another's code: each imports only its own folder and shared/", async () => {
  const all = await imports();
  assert.ok(all.length > 15, "the sources were read");
  for (const { file, local } of all) {
    const context = file.split(path.sep)[0];
    for (const target of local) {
      const where = target.split(path.sep)[0];
      const allowed = where === context || where === "shared" || (context === "background" && where === "..");
      assert.ok(allowed, `${file} imports ${target}`);
    }
  }
});

test("no screen imports another screen or the shell", async () => {
  const screens = (await imports()).filter(({ file }) => file.startsWith(path.join("pages", "screens")));
  assert.equal(screens.length, 8);
  for (const { file, local } of screens) {
    for (const target of local) {
      assert.ok(!target.startsWith(path.join("pages", "screens")), `${file} imports the screen ${target}`);
      assert.notEqual(target, path.join("pages", "shell"), `${file} imports the shell`);
    }
  }
});
