import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { invalidConfiguration } from "../core/config-error";

// Variables para `wrangler dev` en un archivo `--env-file`, nunca en la línea de órdenes (la ve
// cualquiera con `ps`). Sin dependencias de npm: también corre en la imagen del edge, que no las trae.

/**
 * Archivo dotenv que wrangler lee sin alterar los valores. Wrangler expande `$VAR` (dotenv-expand):
 * `\$` deja un `$` literal. Las comillas no se escapan en dotenv: se usa una que el valor no tenga.
 */
export function dotenvFile(vars: Record<string, string>): string {
  const lines = Object.entries(vars).map(([name, value]) => {
    const escaped = value.replaceAll("$", "\\$");
    const quote = ["'", "`", '"'].find(
      // Entre comillas dobles dotenv convierte `\n` en salto de línea.
      (q) => !escaped.includes(q) && (q !== '"' || !/\\[nr]/.test(escaped)),
    );
    // dotenv cambia los \r por \n, y una barra final escaparía la comilla de cierre.
    if (!quote || value.includes("\r") || escaped.endsWith("\\")) {
      throw invalidConfiguration([
        [name, "cannot be handed to wrangler dev: it mixes ', \" and ` or has \\r or a final \\"],
      ]);
    }
    return `${name}=${quote}${escaped}${quote}`;
  });
  return `${lines.join("\n")}\n`;
}

/** El archivo de variables en una carpeta temporal solo del usuario (0700, archivo 0600). */
export function writePrivateEnvFile(content: string): { path: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "farutech-edge-env-"));
  const path = join(dir, "edge.env");
  writeFileSync(path, content, { mode: 0o600, flag: "wx" });
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
