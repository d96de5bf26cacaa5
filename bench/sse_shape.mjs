// The content rule shared by bench/fake_openai_upstream.mjs and the bench clients: content
// chunk `i` of a fake stream is contentOf(i, bytes), so a client can check every byte it got.
export function contentOf(i, bytes) {
  const word = `w${i} `;
  return word.repeat(Math.ceil(bytes / word.length)).slice(0, bytes);
}

// The whole answer of a stream of `chunks` chunks of `bytes` bytes each.
export function expectedText(chunks, bytes) {
  let text = '';
  for (let i = 0; i < chunks; ++i) text += contentOf(i, bytes);
  return text;
}
