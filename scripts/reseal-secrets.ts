import { userInfo } from "node:os";
import { cliLogger, failCli } from "../core/cli";
import { invalidConfiguration } from "../core/config";
import { createSecretBox } from "../core/secret-box";
import { envWithSstLinks } from "../core/sst-links";
import { createDb, dbConfigFromEnv } from "../db/client";
import { resealSecrets } from "../db/secrets";

// npm run secrets:reseal [-- --check]
// Tras poner una clave nueva al frente de ENCRYPTION_KEYS: vuelve a cifrar con ella los secretos
// guardados con las viejas. --check solo cuenta. Una clave se puede retirar cuando su kid ya no
// aparece en "remaining". En las imágenes: `node dist/reseal-secrets.js [--check]`; con SST, los
// valores llegan como links (`sst shell`), como al resto de los CLI.
const args = process.argv.slice(2);
if (args.some((a) => a !== "--check")) {
  // --help es una pregunta, no un error: el uso por stdout y 0.
  const help = args.length === 1 && (args[0] === "--help" || args[0] === "-h");
  (help ? console.log : console.error)("usage: npm run secrets:reseal [-- --check]");
  process.exit(help ? 0 : 2);
}
const dryRun = args.includes("--check");
cliLogger("reseal-cli", "warn");
const env = envWithSstLinks(process.env);
try {
  if (!env.ENCRYPTION_KEYS) {
    throw invalidConfiguration([["ENCRYPTION_KEYS", "is required to read and seal secrets"]]);
  }
  const box = await createSecretBox(env.ENCRYPTION_KEYS);
  const db = await createDb({ ...dbConfigFromEnv(env), pgliteMustExist: true });
  try {
    const report = await resealSecrets(db.db, box, { dryRun, actor: `cli:${userInfo().username}` });
    console.log(
      `${dryRun ? "would reseal" : "resealed"} ${report.resealed} secret(s) with key ${box.activeKeyId}`,
    );
    for (const [key, n] of Object.entries(report.remaining).sort()) {
      console.log(`remaining ${key}: ${n}`);
    }
    for (const f of report.failed) console.error(`cannot read ${f.column} ${f.id}: ${f.error}`);
    process.exitCode = report.failed.length > 0 ? 1 : 0;
  } finally {
    await db.close();
  }
} catch (err) {
  failCli(err);
}
