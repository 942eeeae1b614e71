/**
 * Una URL de webhook sin lo que puede ser secreto: muchos receptores (Slack, Discord…) llevan el
 * token en la ruta o en la query. Queda el origen, que basta para reconocer el destino; el
 * endpoint se identifica por su id.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    const hidden = (u.pathname !== "/" && u.pathname !== "") || u.search !== "";
    return `${u.origin}${hidden ? "/…" : "/"}`;
  } catch {
    return "<invalid url>";
  }
}
