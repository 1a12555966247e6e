// The World target: a procedural image–text world with exact ground truth (scenes rendered to PNG,
// their symbolic records, captions, instructions, questions and preference pairs).
