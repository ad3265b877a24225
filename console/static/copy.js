// Copy buttons for the console's one-time values. Without JavaScript the
// buttons stay hidden and the read-only fields are selected and copied by
// hand.
document.querySelectorAll("button[data-copy]").forEach(function (button) {
	var field = document.getElementById(button.dataset.copy);
	if (!field || !navigator.clipboard) {
		return;
	}
	button.hidden = false;
	button.addEventListener("click", function () {
		navigator.clipboard.writeText(field.value).then(function () {
			button.textContent = "Copied";
		});
	});
});
