// The hosted fusion tool's quick start, verbatim but for the URL, the key and the
// model: run by tests/test_api_node.py against `langfusion serve`.
const URL = process.env.LANGFUSION_URL; // e.g. http://127.0.0.1:8765/api/v1/chat/completions
const API_KEY = process.env.LANGFUSION_KEY;
const MODEL = process.env.LANGFUSION_MODEL;

const response = await fetch(URL, {
  method: 'POST',
  headers: {
    Authorization: `Bearer ${API_KEY}`,
    'Content-Type': 'application/json',
  },
  body: JSON.stringify({
    model: MODEL,
    messages: [
      {
        role: 'user',
        content: 'Survey the strongest arguments for and against a carbon tax. Where do experts disagree?',
      },
    ],
    tools: [
      { type: 'openrouter:fusion' },
    ],
  }),
});

const data = await response.json();
console.log(data.choices[0].message.content);
