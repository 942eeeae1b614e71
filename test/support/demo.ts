// Se reexporta para las pruebas; vive junto a la demo porque también lo usa publish:test.
export { demoProvisionBody } from "../../db/seed";
