import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// Nothing for @handoff/sdk: it finds its wasm both pre-bundled by `vite dev` and in `vite build`.
export default defineConfig({
  plugins: [react()],
});
