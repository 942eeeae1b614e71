import type { Role } from "../../core/auth/tokens";

// Quién puede qué (issue 3): platform_admin todo; catalog_manager catálogo y planes; support solo lee.
export const CATALOG_READ: Role[] = ["platform_admin", "catalog_manager", "support"];
export const CATALOG_WRITE: Role[] = ["platform_admin", "catalog_manager"];
export const TENANT_READ: Role[] = ["platform_admin", "support"];
export const TENANT_WRITE: Role[] = ["platform_admin"];
