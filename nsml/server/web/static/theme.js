/* Loaded without defer, before first paint, so a dark-theme user never sees a white flash.
   A file, not an inline script: the Content-Security-Policy allows scripts from this server only. */
document.documentElement.dataset.theme = localStorage.getItem("nsml-theme") ||
  (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
